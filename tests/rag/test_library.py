"""Indexing and retrieval on the real components: real embedder, real Chroma, real PDFs."""

from __future__ import annotations

import shutil
import time

import pytest

from desktop.rag.types import CancelToken
from tests.conftest import eval_path, load_eval
from tests.helpers.embedders import Unbuilt

AMCOR = ("financebench", "pdfs", "AMCOR_2023Q4_EARNINGS.pdf")


def _chunk_ids(library, collection="default"):
    return library.catalog.all_chunk_ids(collection)


def test_right_page_comes_back_for_known_questions(library):
    """FinanceBench gives 0-based evidence pages; Sprig's pages are 1-based."""
    loaders = load_eval()
    _, questions = loaders.load_financebench()
    wanted = {"AMCOR_2023Q4_EARNINGS", "ULTABEAUTY_2023Q4_EARNINGS"}
    picked = [q for q in questions if q["gold_doc_ids"][0] in wanted]
    assert len(picked) >= 4
    paths = [eval_path("financebench", "pdfs", f"{name}.pdf") for name in sorted(wanted)]
    summary = library.index(paths)
    assert not summary.failed
    hits = 0
    for q in picked:
        gold = {p + 1 for p in q["gold_pages"]}
        found = library.search(q["question"], k=5)
        assert all(p.page is not None for p in found)
        if any(p.page in gold and q["gold_doc_ids"][0] in p.path for p in found):
            hits += 1
    # page-level recall@5 on these real filings (tables included)
    assert hits / len(picked) >= 0.6, f"{hits}/{len(picked)}"


def test_reindexing_creates_no_duplicates(library, tmp_path):
    src = eval_path(*AMCOR)
    first = library.index([src])
    ids = _chunk_ids(library)
    assert first.indexed == [str(src)] and first.chunks == len(ids) > 0
    assert library.store.count("default") == len(ids)
    again = library.index([src])
    assert again.indexed == [] and again.skipped == [str(src)]
    assert _chunk_ids(library) == ids
    assert library.store.count("default") == len(ids)
    # touching the file (new mtime, same bytes) is still no work: the hash says unchanged
    copy = tmp_path / "copy.pdf"
    shutil.copy(src, copy)
    library.index([copy])
    n = library.store.count("default")
    time.sleep(0.01)
    copy.touch()
    touched = library.index([copy])
    assert touched.skipped == [str(copy)] and library.store.count("default") == n


def test_modified_and_deleted_files_are_synced(library, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    a = folder / "a.txt"
    b = folder / "b.md"
    a.write_text("The warehouse in Ghent stores the spare rotor blades.\n" * 3, encoding="utf-8")
    b.write_text("# Shipping\n\nParcels leave every Tuesday from dock 7.\n", encoding="utf-8")
    s = library.index([folder])
    assert sorted(s.indexed) == sorted([str(a), str(b)])
    old_ids = {c for c in _chunk_ids(library)}

    a.write_text("The warehouse moved to Antwerp; rotor blades now ship from there.\n", encoding="utf-8")
    b.unlink()
    s = library.index([folder])
    assert s.indexed == [str(a)] and s.removed == [str(b)]
    docs = {d.path: d for d in library.documents("default")}
    assert set(docs) == {str(a)}
    new_ids = _chunk_ids(library)
    assert not (old_ids & new_ids)  # the old version's chunks are gone from the catalog...
    assert library.store.all_ids("default") == new_ids  # ...and from Chroma
    top = library.search("Where are the rotor blades stored?", k=1)[0]
    assert "Antwerp" in top.text
    assert library.search("dock 7 Tuesday parcels", k=5, mode="keyword") == []
    report = library.consistency_report()
    assert report["missing_vectors"] == report["orphan_vectors"] == 0


def test_exact_rare_term_is_found_by_hybrid_search(library, tmp_path):
    articles = sorted(eval_path("squad_v1.1_dev", "derived", "articles").glob("*.txt"))[:4]
    needle = tmp_path / "inventory.txt"
    filler = "The storage room holds boxes of assorted office supplies and paper. " * 30
    needle.write_text(filler + "Replacement gasket part number QX-7781-B is on shelf four. " + filler, encoding="utf-8")
    library.index([*articles, needle])
    hybrid = library.search("QX-7781-B", k=3)
    assert hybrid and hybrid[0].path == str(needle)
    assert "QX-7781-B" in hybrid[0].text
    assert hybrid[0].keyword_rank == 1


def test_damaged_pdf_is_reported_and_the_batch_goes_on(library, tmp_path):
    good = eval_path(*AMCOR)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(good.read_bytes()[:20000])
    text = tmp_path / "fine.txt"
    text.write_text("The meeting is on the fourth floor, room 412.", encoding="utf-8")
    summary = library.index([broken, good, text])
    assert sorted(summary.indexed) == sorted([str(good), str(text)])
    assert list(summary.failed) == [str(broken)]
    assert "damaged PDF" in summary.failed[str(broken)]
    doc = library.catalog.document("default", str(broken))
    assert doc.status == "failed" and doc.code == "damaged" and doc.chunks == 0
    assert library.search("room 412 fourth floor", k=1)[0].path == str(text)


def test_collections_are_separate(library, tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("Zebras graze on the savanna at dawn.", encoding="utf-8")
    two = tmp_path / "two.txt"
    two.write_text("Penguins huddle together in the Antarctic winter.", encoding="utf-8")
    library.index([one], collection="africa")
    library.index([two], collection="antarctica")
    assert {p.path for p in library.search("animals", k=5, collection="africa")} == {str(one)}
    assert {p.path for p in library.search("animals", k=5, collection="antarctica")} == {str(two)}
    assert set(library.collections()) >= {"africa", "antarctica"}
    library.delete_collection("africa")
    assert library.search("zebras", k=5, collection="africa") == []


def test_cancel_leaves_documents_fully_indexed_or_absent(library):
    articles = sorted(eval_path("squad_v1.1_dev", "derived", "articles").glob("*.txt"))[:4]
    cancel = CancelToken()
    seen = []

    def progress(p):
        seen.append(p)
        if p.stage == "embed" and p.file_index == 2 and p.chunks_done:
            cancel.cancel()

    summary = library.index(articles, progress=progress, cancel=cancel)
    assert summary.cancelled
    assert summary.indexed == [str(articles[0])]
    docs = library.documents("default")
    assert [d.path for d in docs] == [str(articles[0])]
    assert docs[0].status == "indexed"
    assert library.store.all_ids("default") == _chunk_ids(library)
    # progress reported file i of n, pages and chunks
    assert any(p.stage == "embed" and p.chunks > 0 for p in seen)
    # resuming later indexes the rest
    rest = library.index(articles)
    assert sorted(rest.indexed) == sorted(str(a) for a in articles[1:])


def test_remove_deletes_from_both_stores(library, tmp_path):
    doc = tmp_path / "memo.txt"
    doc.write_text("Budget approval deadline is March 3rd.", encoding="utf-8")
    library.index([doc])
    assert library.store.count("default") > 0
    assert library.remove(doc) == [str(doc)]
    assert library.documents() == []
    assert library.store.count("default") == 0
    assert library.search("budget deadline", k=3) == []


@pytest.mark.parametrize("k", [1, 5])
def test_search_results_carry_location_and_scores(squad_index, k):
    passages = squad_index.search("Which NFL team represented the AFC at Super Bowl 50?", k=k)
    assert len(passages) == k
    top = passages[0]
    assert top.path.endswith("000_Super_Bowl_50.txt")
    assert "Denver Broncos" in " ".join(p.text for p in passages)
    assert top.similarity is not None and 0 < top.similarity <= 1
    assert top.score > 0 and top.char_end > top.char_start
    source = open(top.path, encoding="utf-8").read()
    assert source[top.char_start : top.char_end] == top.text


def test_a_file_failed_under_a_limit_is_retried_once_the_limit_is_raised(sprig_home, tmp_path, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    big = tmp_path / "big.txt"
    big.write_text("The pump log says the valve was checked." + "\n" * 1_200_000)  # 1.2 MB, one chunk
    lib = Library(Paths(sprig_home), Settings(max_file_mb=1), embedder=embedder)
    assert "too large" in lib.index([big]).failed[str(big)]
    assert str(big) in lib.index([big]).failed  # same limit: not retried
    lib.close()
    lib = Library(Paths(sprig_home), Settings(max_file_mb=2), embedder=embedder)
    summary = lib.index([big])
    lib.close()
    assert summary.indexed == [str(big)], summary.failed


def test_the_first_document_says_the_embedder_is_being_prepared(sprig_home, tmp_path, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import PREPARE_MESSAGE, Library

    unbuilt = Unbuilt(embedder)
    lib = Library(Paths(sprig_home), Settings(), embedder=unbuilt)
    notes = []
    for i in range(2):
        notes.append(tmp_path / f"note-{i}.txt")
        notes[-1].write_text(f"Note {i}.\n\nThe pump is serviced every {500 + i} hours.\n", "utf-8")
    stages = []
    lib.index(notes, progress=lambda p: stages.append((p.stage, p.file_index, p.message)))
    prepares = [s for s in stages if s[0] == "prepare"]
    assert prepares == [("prepare", 1, PREPARE_MESSAGE)]  # once, for the first file, before it embeds
    assert stages.index(prepares[0]) < stages.index(next(s for s in stages if s[0] == "embed"))
    assert unbuilt.loads == 1
    lib.close()
