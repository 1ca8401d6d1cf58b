"""Indexing and retrieval on the real components: real embedder, real Chroma, real PDFs."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from desktop.rag.types import CancelToken
from tests.conftest import eval_path, load_eval
from tests.helpers.embedders import CountingEmbedder, Gated, Unbuilt

AMCOR = ("financebench", "pdfs", "AMCOR_2023Q4_EARNINGS.pdf")
CLEAN = {"missing_vectors": 0, "orphan_vectors": 0, "in_flight": 0, "catalog_ok": True}


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


def test_cancel_keeps_whole_documents_and_the_next_run_finishes_their_vectors(library):
    """A cancel in a document's vector phase keeps its chunks (searchable by keyword, never
    half of them) and the vectors written so far; the next run writes the rest without
    parsing it again. Documents not started leave no trace."""
    from desktop.rag.library import EMBED_BATCH

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
    assert [(d.path, d.status) for d in docs] == [(str(articles[0]), "indexed"), (str(articles[1]), "embedding")]
    partial = docs[1]
    ids = library.catalog.chunk_ids(partial.id)
    stored = library.store.all_ids("default")
    assert len(ids) == len(set(ids)) == partial.chunks > EMBED_BATCH
    assert stored <= _chunk_ids(library)  # no orphans
    assert len(stored & set(ids)) == partial.vectors == EMBED_BATCH and partial.embedded < 1
    assert library.consistency_report()["in_flight"] == 1
    found = library.search("Warsaw Old Town", k=5, mode="keyword")
    assert any(p.path == str(articles[1]) and p.bm25 is not None for p in found)
    # progress reported file i of n, pages and chunks
    assert any(p.stage == "embed" and p.chunks > 0 for p in seen)
    # the next run indexes the rest and only embeds the vectors that are missing
    counting = CountingEmbedder(library.embedder)
    library.embedder = counting
    later = []
    rest = library.index(articles, progress=later.append)
    assert sorted(rest.indexed) == sorted(str(a) for a in articles[1:])
    assert not [p for p in later if p.stage == "parse" and p.path == str(articles[1])]
    docs = library.documents("default")
    assert {d.status for d in docs} == {"indexed"}
    assert counting.passages == sum(d.chunks for d in docs[1:]) - EMBED_BATCH
    assert library.catalog.chunk_ids(partial.id) == ids
    assert library.consistency_report() == CLEAN


def test_a_document_is_searchable_by_keyword_before_its_vectors_are_written(sprig_home, tmp_path, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    gated = Gated(embedder)
    lib = Library(Paths(sprig_home), Settings(), embedder=gated)
    note = tmp_path / "pump.txt"
    note.write_text("Maintenance notes.\n\nThe replacement gasket for the feed pump is part QX-7781-B; "
                    "it sits on shelf four of the basement store.\n", "utf-8")
    job = threading.Thread(target=lib.index, args=([note],))
    job.start()
    try:
        assert gated.waiting.wait(120), "indexing never reached its vector phase"
        doc = lib.documents()[0]
        assert (doc.status, doc.vectors, doc.embedded) == ("embedding", 0, 0.0) and doc.chunks > 0
        assert doc.as_json()["status"] == "embedding" and doc.as_json()["embedded"] == 0.0
        hits = lib.search("Which part is the feed pump gasket?", k=3)  # hybrid: the keyword side finds it
        assert hits and hits[0].path == str(note) and "QX-7781-B" in hits[0].text
        assert hits[0].bm25 is not None and hits[0].keyword_rank == 1
        assert hits[0].vector_rank is None and hits[0].similarity is None  # no vectors yet
        assert lib.store.all_ids("default") == set()
    finally:
        gated.release()
        job.join(120)
    doc = lib.documents()[0]
    assert (doc.status, doc.vectors, doc.embedded) == ("indexed", doc.chunks, 1.0)
    hit = lib.search("Which part is the feed pump gasket?", k=3)[0]
    assert hit.path == str(note) and hit.bm25 is not None and hit.vector_rank == 1  # hybrid now
    assert lib.consistency_report() == CLEAN
    lib.close()


class Recording:
    """The real embedder, keeping the passages it was given (queries are not recorded)."""

    def __init__(self, real):
        self.real = real
        self.texts: list[str] = []

    def embed(self, texts, batched: bool = False):
        self.texts.extend(texts)
        return self.real.embed(texts, batched)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_rebuild_embeds_what_indexing_embedded(sprig_home, tmp_path, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library
    from tests.helpers.hostile import text_pdf

    pages = [[f"Chapter {n}: the harbour at Port {n}.",
              f"Cranes at Port {n} lifted {n * 1000} containers in the year, a record for the port."]
             for n in range(1, 4)]
    pdf = tmp_path / "harbour_report.pdf"
    pdf.write_bytes(text_pdf(pages))
    recording = Recording(embedder)
    lib = Library(Paths(sprig_home), Settings(), embedder=recording)
    assert not lib.index([pdf]).failed
    stored = [c.text for _cid, c in lib.catalog.chunks_of(lib.documents()[0].id)]
    assert recording.texts == [f"harbour report\n{text}" for text in stored] and len(stored) == 3
    indexed = list(recording.texts)
    recording.texts.clear()
    lib.rebuild_vectors()
    assert recording.texts == indexed
    hit = lib.search("How many containers did the cranes at Port 2 lift?", k=1)[0]
    assert hit.page == 2 and hit.vector_rank == 1
    lib.close()


def test_a_changed_file_is_searchable_as_one_version_at_every_moment(sprig_home, tmp_path, embedder):
    """The older version answers until the new chunks are committed, in one transaction; from
    then on only the new one does (by keyword until its vectors land); never both, never a
    chunk twice."""
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    gated = Gated(embedder)
    gated.release()
    lib = Library(Paths(sprig_home), Settings(), embedder=gated)
    note = tmp_path / "boiler.txt"
    note.write_text("The boiler room key hangs behind the blue door in Ghent.\n", "utf-8")
    lib.index([note])
    old_ids = set(lib.catalog.all_chunk_ids())
    note.write_text("The boiler room key moved to the locker by the Antwerp loading dock.\n" * 40, "utf-8")

    def versions() -> set[str]:
        """Which versions the searches see; the catalog never holds a chunk twice."""
        rows = lib.catalog._query("SELECT chunk_id, seq FROM chunks")
        assert len({r["chunk_id"] for r in rows}) == len({r["seq"] for r in rows}) == len(rows)
        seen = set()
        for mode in ("hybrid", "keyword"):
            for p in lib.search("where does the boiler room key hang Ghent Antwerp", k=10, mode=mode):
                seen.add("old" if "Ghent" in p.text else "new")
        return seen

    committing, commit_go = threading.Event(), threading.Event()
    real_commit = lib.catalog.commit_chunks

    def held_commit(*args, **kwargs):
        committing.set()
        assert commit_go.wait(120)
        return real_commit(*args, **kwargs)

    lib.catalog.commit_chunks = held_commit
    gated.gate.clear()
    job = threading.Thread(target=lib.index, args=([note],))
    job.start()
    try:
        assert committing.wait(120)
        assert versions() == {"old"}  # parsed, not committed: the older version answers
        assert lib.documents()[0].status == "indexed"
        commit_go.set()
        assert gated.waiting.wait(120)
        assert versions() == {"new"}  # committed, vectors under way: the new version by keyword
        doc = lib.documents()[0]
        assert doc.status == "embedding" and not (set(lib.catalog.chunk_ids(doc.id)) & old_ids)
        assert not (lib.store.all_ids("default") & old_ids)  # the older vectors went with its chunks
    finally:
        commit_go.set()
        gated.release()
        job.join(120)
    assert versions() == {"new"}
    assert lib.documents()[0].status == "indexed"
    assert lib.consistency_report() == CLEAN
    lib.close()


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
