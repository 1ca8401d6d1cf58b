"""Chunks are measured in the embedder's tokens, keep their spans, and never cross pages."""

from __future__ import annotations

from desktop.rag.chunking import chunk_pages
from desktop.rag.types import PageText
from tests.conftest import eval_path


def test_chunks_fit_the_embedder_and_point_back_at_their_text(embedder):
    text = eval_path("squad_v1.1_dev", "derived", "articles", "001_Warsaw.txt").read_text(encoding="utf-8")
    tokenizer = embedder.tokenizer
    chunks = chunk_pages([PageText(None, text)], tokenizer, max_tokens=128, overlap=24)
    assert len(chunks) > 20
    for c in chunks:
        assert c.text and c.text == c.text.strip()
        assert text[c.char_start : c.char_end] == c.text
        assert len(tokenizer.encode(c.text, add_special_tokens=False).ids) <= 128
    # overlapping, ordered, covering the whole text
    assert chunks[0].char_start == 0
    assert chunks[-1].char_end == len(text.rstrip())
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.char_start < a.char_end  # overlap
        assert b.char_start > a.char_start


def test_chunks_prefer_sentence_ends(embedder):
    sentences = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(200))
    chunks = chunk_pages([PageText(1, sentences)], embedder.tokenizer, max_tokens=100, overlap=10)
    ends = [c.text[-1] for c in chunks[:-1]]
    assert sum(e == "." for e in ends) >= len(ends) * 0.9


def test_pages_are_never_crossed(embedder):
    pages = [PageText(1, "Alpha beta gamma. " * 50), PageText(2, "Delta epsilon. " * 50), PageText(3, "")]
    chunks = chunk_pages(pages, embedder.tokenizer, max_tokens=64, overlap=8)
    assert {c.page for c in chunks} == {1, 2}
    for c in chunks:
        source = pages[c.page - 1].text
        assert source[c.char_start : c.char_end] == c.text
    assert [c.seq for c in chunks] == list(range(len(chunks)))
