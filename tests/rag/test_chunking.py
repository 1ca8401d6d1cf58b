"""Chunks are measured in the embedder's tokens, keep their spans, and never cross pages."""

from __future__ import annotations

from desktop.rag.chunking import chunk_pages, running_lines
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


def test_without_overlap_chunks_tile_the_text(embedder):
    """Each word embedded once: a chunk starts where the last one ended, nothing in between."""
    text = eval_path("squad_v1.1_dev", "derived", "articles", "001_Warsaw.txt").read_text(encoding="utf-8")
    chunks = chunk_pages([PageText(None, text)], embedder.tokenizer, overlap=0)
    assert len(chunks) > 20
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.char_end <= b.char_start
        assert not text[a.char_end : b.char_start].strip()
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(text.rstrip())
    default = chunk_pages([PageText(None, text)], embedder.tokenizer)  # 8 tokens of overlap
    wide = chunk_pages([PageText(None, text)], embedder.tokenizer, overlap=24)
    assert len(chunks) <= len(default) < len(wide)
    assert all(b.char_start < a.char_end for a, b in zip(default, default[1:], strict=False))


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


def _edges(chunks) -> dict:
    """page -> (text of its first chunk, text of its last), as the catalog gives them."""
    out: dict = {}
    for c in chunks:
        first, last = out.get(c.page, (c, c))
        out[c.page] = (min(first, c, key=lambda x: x.char_start), max(last, c, key=lambda x: x.char_end))
    return {page: (first.text, last.text) for page, (first, last) in out.items()}


def _report(pages: int) -> list[PageText]:
    """A report whose pages carry a running header and a numbered footer."""
    return [PageText(n, "Northwind Traders Annual Report 2023\n"
                        + f"Section {n} describes the harbour operations of region {n}. " * 3
                        + f"\nPage {n} of {pages}") for n in range(1, pages + 1)]


def test_running_headers_and_footers_are_found_page_numbers_aside(embedder):
    chunks = chunk_pages(_report(6), embedder.tokenizer, max_tokens=32, overlap=4)
    assert len(chunks) > 6  # several chunks a page: the first and the last are compared
    assert running_lines(_edges(chunks)) == {"northwind traders annual report #", "page # of #"}
    # a line on two pages of six is not running; nor is any line of a document with two pages
    assert not running_lines({1: ("Intro\nx", "y"), 2: ("Intro\nx", "z"), 3: ("a", "b"), 4: ("c", "d"),
                              5: ("e", "f"), 6: ("g", "h")})
    assert not running_lines(_edges(chunk_pages(_report(2), embedder.tokenizer)))
    assert not running_lines({None: ("Same\nx", "Same")})  # text without pages has none
