"""Split page text into chunks measured in the embedder's own tokens.

all-MiniLM-L6-v2 reads at most 256 word pieces and silently drops the rest, so chunks are
counted in its tokenizer's tokens, not characters. Chunks end at the best nearby break
(paragraph, sentence, word), overlap a little (8 tokens by default), never cross a page, and keep their
character span inside the page text so a citation can point back at the exact passage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from desktop.rag.types import Chunk, PageText

_SENTENCE_END = frozenset(".!?;:")


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: str):
    """The embedder's fast tokenizer, without truncation or padding (no torch needed)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _break_scores(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """score[k] rates a cut before token k: 3 paragraph, 2 sentence/line, 1 word, 0 inside a word."""
    scores = [3] * (len(offsets) + 1)
    for k in range(1, len(offsets)):
        prev_end = offsets[k - 1][1]
        gap = text[prev_end : offsets[k][0]]
        if "\n\n" in gap:
            scores[k] = 3
        elif "\n" in gap or (gap and prev_end and text[prev_end - 1] in _SENTENCE_END):
            scores[k] = 2
        elif gap:
            scores[k] = 1
        else:
            scores[k] = 0
    return scores


def chunk_page(
    page: PageText, tokenizer, max_tokens: int = 128, overlap: int = 8, start_seq: int = 0
) -> list[Chunk]:
    text = page.text
    if not text.strip():
        return []
    encoding = tokenizer.encode(text, add_special_tokens=False)
    offsets = [o for o in encoding.offsets]
    if not offsets:
        return []
    scores = _break_scores(text, offsets)
    n = len(offsets)
    overlap = max(0, min(overlap, max_tokens // 2))
    chunks: list[Chunk] = []
    i = 0
    while i < n:
        j = min(i + max_tokens, n)
        if j < n:
            lo = i + max_tokens // 2
            best, best_score = j, scores[j]
            for k in range(j, lo, -1):
                if scores[k] > best_score:
                    best, best_score = k, scores[k]
                    if best_score == 3:
                        break
            j = best
        start, end = offsets[i][0], offsets[j - 1][1]
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            chunks.append(
                Chunk(
                    seq=start_seq + len(chunks),
                    page=page.number,
                    char_start=start + lead,
                    char_end=start + lead + len(stripped),
                    text=stripped,
                )
            )
        if j >= n:
            break
        nxt = max(j - overlap, i + 1)
        # start the overlap on a word boundary
        for k in range(nxt, j):
            if scores[k] >= 1:
                nxt = k
                break
        i = nxt
    return chunks


def chunk_pages(
    pages: Iterable[PageText], tokenizer, max_tokens: int = 128, overlap: int = 8
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for page in pages:
        chunks.extend(chunk_page(page, tokenizer, max_tokens, overlap, start_seq=len(chunks)))
    return chunks


# ------------------------------------------------------------- running headers and footers
_DIGITS = re.compile(r"\d+")


def line_key(line: str) -> str:
    """A line as a running header repeats it: spaces collapsed, any number alike, any case."""
    return _DIGITS.sub("#", " ".join(line.split())).lower()


def running_lines(edges: Mapping[int | None, tuple[str, str]]) -> frozenset[str]:
    """A document's running headers and footers, as ``line_key``s: the first or last lines
    of a page that at least 3 pages and a fifth of its pages share (page numbers aside).
    ``edges`` maps each page to (text of its first chunk, text of its last)."""
    counts: Counter[str] = Counter()
    for page, (first, last) in edges.items():
        if page is None:
            continue
        top, bottom = line_key(first.partition("\n")[0]), line_key(last.rpartition("\n")[2])
        counts[top] += 1
        if bottom != top:
            counts[bottom] += 1
    pages = sum(1 for page in edges if page is not None)
    return frozenset(k for k, n in counts.items() if k and n >= 3 and n >= 0.2 * pages)
