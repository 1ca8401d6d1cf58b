"""What a chunk's vector is made from: its document's title, then its text."""

from __future__ import annotations

from desktop.rag.types import Chunk
from desktop.rag.vector_text import document_title, vector_text


def test_a_chunk_is_embedded_under_its_documents_title():
    chunk = Chunk(seq=0, page=3, char_start=10, char_end=27, text="Net sales rose 5%")
    assert vector_text("/reports/AMCOR_2023Q4_EARNINGS.pdf", chunk) == "AMCOR 2023Q4 EARNINGS\nNet sales rose 5%"
    assert document_title("/a/b/annual-report.v2.txt") == "annual report v2"
    assert document_title("notes.md") == "notes"
