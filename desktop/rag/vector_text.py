"""What a chunk's vector is computed from: its document's title, then its text. The stored
and shown text stays the chunk alone.

A passage like "Net sales rose 5%" means little on its own; with the title the vector also
says whose sales.

Measured and left out (``bench/quality.py --no-llm``, 42 FinanceBench questions over 24
filings, 1,163 pages; 2,000 SQuAD questions; README, Quality):

* the document's running headers and footers taken out of the embedded text: 0.34% fewer
  tokens to embed, page recall@5 0.643 -> 0.667 (one question) on FinanceBench and 4/6 -> 3/6
  on the filings of ``tests/rag/test_library.py``: noise either way, and a running header
  such as "Chapter 4: Networking" is often the page's own heading;
* the heading a chunk sits under (a statement's title for the rows lower down its page)
  added before its text: page recall@5 0.667 -> 0.524, and 8% more tokens to embed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from desktop.rag.types import Chunk


def document_title(path: str | os.PathLike) -> str:
    """A readable title from a file name: 'AMCOR_2023Q4_EARNINGS.pdf' -> 'AMCOR 2023Q4 EARNINGS'."""
    return re.sub(r"[_\-.]+", " ", Path(path).stem).strip()


def vector_text(path: str | os.PathLike, chunk: Chunk) -> str:
    """The text embedded for a chunk of the document at ``path``."""
    return f"{document_title(path)}\n{chunk.text}"
