"""Retrieval health check on real documents, the real embedder and a real library in a tmp folder:
sample questions from the documents' own sentences, the search the answers use, the figure,
the documents that do worst and the cause their text shows, the cache, cancel, `sprig health`."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest

from desktop.errors import Cancelled
from desktop.rag import probes
from desktop.rag.loaders import load_document
from desktop.rag.probes import (
    TOP_K,
    HealthReport,
    Outcome,
    Probe,
    Signs,
    cached_report,
    check_collection,
    guess_reason,
)
from desktop.rag.types import CancelToken
from tests.conftest import SQUAD_ARTICLES, eval_path

SHORT = ["016_Amazon_rainforest.txt", "008_Sky__United_Kingdom_.txt", "029_Construction.txt"]


def article(name: str):
    return eval_path("squad_v1.1_dev", "derived", "articles", name)


def by_name(report: HealthReport) -> dict:
    return {d.path.rsplit("/", 1)[-1]: d for d in report.documents}


def first_rank(library, outcome: Outcome, collection: str = "default") -> int | None:
    """Where the probe's page is among the search's top 5, worked out here independently."""
    p = outcome.probe
    for i, hit in enumerate(library.search(p.query, k=TOP_K, collection=collection), start=1):
        same_place = hit.page == p.page if p.page is not None else (hit.char_start < p.char_end
                                                                    and hit.char_end > p.char_start)
        if hit.path == p.path and same_place:
            return i
    return None


# ------------------------------------------------------------------ questions and the figure
def test_questions_come_from_each_documents_own_sentences_spread_over_it(library):
    files = [article(n) for n in SHORT]
    assert library.index(files).ok
    report = check_collection(library)
    assert report.probes == 3 * probes.PER_DOCUMENT
    for path in files:
        [page] = load_document(path)  # the text as indexed (runs of spaces folded)
        text = page.text
        mine = [o.probe for o in report.outcomes if o.probe.path == str(path)]
        assert len(mine) == probes.PER_DOCUMENT
        # one from each quarter of the document, never the same place twice
        starts = [p.char_start for p in mine]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        assert starts[-1] - starts[0] > len(text) / 2
        for p in mine:
            assert p.page is None  # a text file has no pages: the span in the file is the answer
            assert text[p.char_start : p.char_end] == p.sentence
            query_words = p.query.split()
            sentence_words = re.findall(r"[^\W_]+(?:['’][^\W_]+)*", p.sentence)
            assert 3 <= len(query_words) < len(sentence_words)  # some words left out: not a copy
            assert set(query_words) <= set(sentence_words)
            assert not re.search(r"\d", p.query)  # numbers are the answers: never in the question
    # the same collection gets the same questions every time
    again = check_collection(library, refresh=True)
    assert [o.probe for o in again.outcomes] == [o.probe for o in report.outcomes]


def test_the_figure_is_the_search_finding_the_source_passage_in_its_top_5(library):
    assert library.index([article(n) for n in SHORT]).ok
    report = check_collection(library)
    # every outcome agrees with the library's own search, asked again here
    for outcome in report.outcomes:
        assert outcome.rank == first_rank(library, outcome), outcome.probe.query
    assert report.found == sum(o.found for o in report.outcomes)
    assert report.found >= report.probes - 3  # clean Wikipedia prose: nearly all are found
    assert report.message == f"Sprig finds the right page for {report.found} of {report.probes} sample questions."
    data = report.as_json()
    assert data["probes"] == 12 and data["recall_at_5"] == round(report.found / 12, 4)
    assert {d["path"] for d in data["documents"]} == {str(article(n)) for n in SHORT}
    for doc in data["worst_documents"]:
        assert doc["recall"] < 1 and doc["reason"] and doc["path"] in {str(article(n)) for n in SHORT}
    # clean text shows no sign of garbling, tables or duplicates
    for doc in report.documents:
        assert doc.signs.odd_share < probes.GARBLED_SHARE
        assert doc.signs.table_share < probes.TABLE_SHARE
        assert doc.signs.duplicate_share == 0.0


def test_pdf_questions_are_found_on_their_page(library):
    pdf = eval_path("financebench", "pdfs", "AMCOR_2023Q4_EARNINGS.pdf")
    assert library.index([pdf, article(SHORT[0])]).ok
    report = check_collection(library)
    pdf_outcomes = [o for o in report.outcomes if o.probe.path == str(pdf)]
    assert len(pdf_outcomes) == probes.PER_DOCUMENT
    assert all(isinstance(o.probe.page, int) for o in pdf_outcomes)
    assert len({o.probe.page for o in pdf_outcomes}) > 1  # spread over the filing
    for outcome in pdf_outcomes:
        assert outcome.rank == first_rank(library, outcome)
    doc = by_name(report)[pdf.name]
    assert doc.signs.pages > 10 and doc.signs.chars_per_page > probes.LITTLE_TEXT
    assert doc.signs.ocr_pages == 0


# ------------------------------------------------------------------ the cache
def test_a_report_is_kept_until_the_collection_changes(library, monkeypatch):
    assert library.index([article(n) for n in SHORT[:2]]).ok
    first = check_collection(library)
    assert not first.cached and first.probes == 8

    def no_search(*args, **kwargs):
        raise AssertionError("an unchanged collection is not asked again")

    with monkeypatch.context() as m:
        m.setattr(library, "search", no_search)
        again = check_collection(library)
    assert again.cached and again.found == first.found and again.probes == first.probes
    assert [o.probe.query for o in again.outcomes] == [o.probe.query for o in first.outcomes]
    assert cached_report(library.catalog, "default", library.embedder.model_id) is not None
    # another collection has its own (none yet)
    assert cached_report(library.catalog, "work", library.embedder.model_id) is None

    # a new document changes the collection: asked again, and the others keep their questions
    assert library.index([article(SHORT[2])]).ok
    assert cached_report(library.catalog, "default", library.embedder.model_id) is None
    grown = check_collection(library)
    assert not grown.cached and grown.probes == 12
    old = {o.probe.query for o in first.outcomes}
    assert old <= {o.probe.query for o in grown.outcomes}
    # a removed document too
    library.remove(article(SHORT[0]))
    shrunk = check_collection(library)
    assert not shrunk.cached and shrunk.probes == 8
    # refresh asks again even when nothing changed
    assert not check_collection(library, refresh=True).cached


def test_progress_and_cancel(library):
    assert library.index([article(SHORT[0])]).ok
    seen = []
    token = CancelToken()

    def progress(p):
        seen.append(p)
        if p.stage == "probe" and p.done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        check_collection(library, progress=progress, cancel=token)
    assert [p.stage for p in seen] == ["read", "probe", "probe", "probe"]
    assert seen[1].total == probes.PER_DOCUMENT and seen[1].path == str(article(SHORT[0]))
    # nothing half-done is kept
    assert cached_report(library.catalog, "default", library.embedder.model_id) is None
    seen.clear()
    report = check_collection(library, progress=seen.append)
    assert [p.done for p in seen if p.stage == "probe"] == list(range(report.probes))
    assert seen[-1].stage == "done" and seen[-1].fraction == 1.0


# ------------------------------------------------------------------ causes
def _garble(text: str) -> str:
    """What a PDF with a broken character map gives: every letter shifted by one."""
    def shift(ch: str) -> str:
        if "a" <= ch <= "z":
            return chr((ord(ch) - 97 + 1) % 26 + 97)
        if "A" <= ch <= "Z":
            return chr((ord(ch) - 65 + 1) % 26 + 65)
        return ch

    return "".join(shift(ch) for ch in text)


def test_a_garbled_document_does_worst_and_says_why(library, tmp_path):
    garbled = tmp_path / "scanned-report.txt"
    garbled.write_text(_garble(article("013_1973_oil_crisis.txt").read_text(encoding="utf-8")), encoding="utf-8")
    assert library.index([garbled, article(SHORT[0]), article(SHORT[1])]).ok
    report = check_collection(library)
    worst = report.worst
    assert worst and worst[0].path == str(garbled)
    assert worst[0].recall <= 0.5 and worst[0].code == "garbled"
    assert worst[0].signs.odd_share >= probes.GARBLED_SHARE
    assert "garbled" in worst[0].reason and "%" in worst[0].reason
    assert [d for d in report.as_json()["worst_documents"] if d["path"] == str(garbled)][0]["reason"] == worst[0].reason
    for name in SHORT[:2]:
        assert by_name(report)[name].code != "garbled"


def test_duplicates_are_named_when_questions_land_on_another_copy(library, tmp_path):
    text = "\n\n".join(article("020_Black_Death.txt").read_text(encoding="utf-8").split("\n\n")[:4])
    copies = []
    for i in range(8):
        path = tmp_path / f"plague-notes-v{i + 1}.txt"
        path.write_text(text, encoding="utf-8")
        copies.append(path)
    assert library.index([*copies, article(SHORT[0])]).ok
    report = check_collection(library)
    docs = by_name(report)
    missed = [o for o in report.outcomes if not o.found and o.probe.path in {str(c) for c in copies}]
    assert missed, "eight identical copies leave no room in the top 5 for every one of them"
    for o in missed:  # the page the search found holds the very same sentence
        assert o.duplicate_path in {str(c) for c in copies} and o.duplicate_path != o.probe.path
        assert o.overlap == 1.0
    for copy in copies:
        doc = docs[copy.name]
        assert doc.signs.duplicate_share == 1.0
        if doc.found < doc.probes:
            assert doc.code == "duplicates"
            assert re.search(r"plague-notes-v\d\.txt", doc.reason) and copy.name not in doc.reason
    assert docs[SHORT[0]].signs.duplicate_share == 0.0


def test_tables_are_named_when_their_rows_are_not_found(library, tmp_path):
    rnd = random.Random(5)
    rows = ["Total operating expenses", "Research and development costs", "Selling general administrative expenses",
            "Income from continuing operations", "Depreciation and amortization charges",
            "Cash used in investing activities", "Deferred income tax liabilities", "Accrued payroll and benefits"]
    lines = []
    for region in range(30):
        lines.append(f"Segment results, region {region + 1}")
        for label in rows:
            lines.append(f"{label} {rnd.randint(100, 9999):,} {rnd.randint(100, 9999):,} {rnd.randint(1, 99)}%")
        lines.append("")
    tables = tmp_path / "segments.txt"
    tables.write_text("\n".join(lines), encoding="utf-8")
    assert library.index([tables, article(SHORT[0])]).ok
    report = check_collection(library)
    doc = by_name(report)["segments.txt"]
    assert doc.signs.table_share >= probes.TABLE_SHARE
    assert doc.found < doc.probes and doc.code == "tables" and "rows of numbers" in doc.reason
    assert report.worst[0].path == str(tables)
    assert by_name(report)[SHORT[0]].signs.table_share < 0.1


def test_scanned_pages_are_counted_from_what_ocr_read(library, tmp_path):
    from tests.helpers.scans import scan_pdf

    scan = scan_pdf(tmp_path / "harbour-scan.pdf")
    assert library.index([scan]).ok
    report = check_collection(library)
    doc = by_name(report)["harbour-scan.pdf"]
    assert doc.signs.pages == 3 and doc.signs.ocr_pages == 3
    assert doc.signs.chars_per_page < probes.LITTLE_TEXT
    # a page it missed would be put down to the scan
    outcome = report.outcomes[0]
    missed = Outcome(outcome.probe, None, "other.pdf", 2)
    code, reason = guess_reason(str(scan), [missed], doc.signs)
    assert code == "scanned" and reason == "scanned: 3 of 3 pages were read by OCR"
    # the same text with a text layer would be "little text" only
    code, reason = guess_reason(str(scan), [missed], Signs(pages=3, chars_per_page=90.0))
    assert code == "scanned" and reason.startswith("little text: about 90 characters a page")


def test_causes_are_told_apart_by_their_evidence():
    probe = Probe("/docs/a.pdf", 1, 4, 0, 90, "Our results could differ materially from those in any forward "
                  "looking statement we make.", "results could differ from those in any looking statement")
    near = Outcome(probe, None, "/docs/b.pdf", 9, "/docs/b.pdf", 9, 0.85)
    same = Outcome(probe, None, "/docs/b.pdf", 9, "/docs/b.pdf", 9, 1.0)
    found = Outcome(probe, 2, "/docs/a.pdf", 4)
    clean = Signs(words=900, pages=10, chars_per_page=2500.0)
    assert guess_reason("/docs/a.pdf", [found, found], clean) == ("", "")
    code, reason = guess_reason("/docs/a.pdf", [found, same, same], clean)
    assert code == "duplicates" and reason == "duplicates: 2 of 2 missed questions found the same text in b.pdf"
    code, reason = guess_reason("/docs/a.pdf", [near, same], Signs(pages=10, chars_per_page=2500.0,
                                                                   duplicate_share=0.4))
    assert code == "duplicates" and "nearly the same sentence" in reason and reason.endswith(
        "in b.pdf; 40% of its sentences are also there")
    again = Outcome(probe, None, "/docs/a.pdf", 7, "/docs/a.pdf", 7, 1.0)
    assert guess_reason("/docs/a.pdf", [again], clean)[0] == "repeated"
    other = Outcome(probe, None, "/docs/c.pdf", 3)
    assert guess_reason("/docs/a.pdf", [other], Signs(odd_share=0.45, pages=10, chars_per_page=2500.0))[0] == "garbled"
    table_probe = Outcome(Probe("/docs/a.pdf", 1, 4, 0, 40, "Total net sales 1,204 1,377", "Total net", True), None,
                          "/docs/c.pdf", 3)
    code, reason = guess_reason("/docs/a.pdf", [table_probe, found], clean)
    assert code == "tables" and reason.startswith("tables: 1 of its 1 missed questions were made from tables")
    assert guess_reason("/docs/a.pdf", [other], clean) == (
        "unclear", "no sign of a cause in the text: other passages matched its questions better (e.g. c.pdf, page 3)")


# ------------------------------------------------------------------ sprig health
def sprig(*args: str, home) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "SPRIG_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "desktop.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_sprig_health_command(sprig_home):
    pdf = eval_path("financebench", "pdfs", "AMCOR_2023Q4_EARNINGS.pdf")
    # nothing indexed yet: nothing to check
    empty = sprig("health", home=sprig_home)
    assert empty.returncode == 1 and "nothing to check" in empty.stderr
    assert sprig("index", str(pdf), str(SQUAD_ARTICLES / SHORT[0]), home=sprig_home).returncode == 0

    result = sprig("health", "--json", home=sprig_home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["probes"] == 2 * probes.PER_DOCUMENT
    assert data["recall_at_5"] == round(data["found"] / data["probes"], 4)
    assert data["message"] == f"Sprig finds the right page for {data['found']} of {data['probes']} sample questions."
    assert not data["cached"] and "questions" not in data
    for doc in data["worst_documents"]:
        assert {"path", "recall", "reason"} <= set(doc) and doc["recall"] < 1
    assert {d["path"] for d in data["documents"]} == {str(pdf), str(SQUAD_ARTICLES / SHORT[0])}

    text = sprig("health", "-v", home=sprig_home)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"Sprig finds the right page for {data['found']} of {data['probes']} sample "
                                  f"questions ({data['found'] / data['probes']:.0%}) in collection 'default'")
    assert "unchanged since" in text.stderr  # the collection did not change: the kept report

    missing = sprig("health", "--collection", "nope", home=sprig_home)
    assert missing.returncode == 3
    assert missing.stderr.strip() == "error: there is no collection named 'nope' (`sprig docs` lists them)"
