"""Hybrid retrieval: the keyword query, rank fusion, and the fused ranking on a real library."""

from __future__ import annotations

from pathlib import Path

from desktop.rag.retrieval import fuse, keyword_query


def test_keyword_query_quotes_each_meaningful_word_once():
    assert keyword_query('What is the "pump" PUMP pressure?') == '"pump" OR "pressure"'
    assert keyword_query("the of and") == ""


def test_fuse_adds_reciprocal_ranks():
    scores = fuse([["a", "b"], ["b", "c"]], k=60)
    assert scores["b"] > scores["a"] > scores["c"]


def test_hybrid_search_finds_a_rare_code_and_a_paraphrase(library, tmp_path: Path):
    """Keywords find the exact code a vector blurs; vectors find the paraphrase keywords miss."""
    filler = " ".join(f"Line {i} of the log records a routine check of the site." for i in range(12))
    notes = tmp_path / "notes.txt"
    notes.write_text(
        f"The spare filter for the garden pump has the part number XJ-4471-B. {filler}\n\n"
        f"Water the tomato seedlings every morning until they are established. {filler}\n\n"
        f"The delivery van is parked behind the warehouse on weekends. {filler}", encoding="utf-8")
    assert not library.index([notes]).failed
    code = library.search("XJ-4471-B", k=1)[0]
    assert "XJ-4471-B" in code.text and code.keyword_rank == 1
    sprouts = library.search("how often do little vegetable sprouts need moisture", k=1)[0]
    assert "tomato seedlings" in sprouts.text and "XJ-4471-B" not in sprouts.text
    assert sprouts.keyword_rank is None and sprouts.vector_rank == 1


def test_a_file_kept_in_two_folders_gives_each_passage_once(library, tmp_path: Path):
    text = "\n\n".join(f"Section {i}. The valve number {i} opens at {i * 10} kilopascals of pressure. "
                       + " ".join(f"Routine note {j} about section {i}." for j in range(14)) for i in range(6))
    copies = []
    for folder in ("Downloads", "Documents"):
        (tmp_path / folder).mkdir()
        copies.append(tmp_path / folder / "valves.txt")
        copies[-1].write_text(text, encoding="utf-8")
    assert not library.index(copies).failed
    found = library.search("At what pressure does a valve open?", k=4)
    assert len(found) == 4
    assert len({" ".join(p.text.split()) for p in found}) == 4
