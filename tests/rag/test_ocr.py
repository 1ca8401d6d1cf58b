"""OCR of scanned PDF pages: indexed offline, page by page, with the line boxes kept.

The scanned PDFs are made here (text drawn with Pillow, saved as one image per page), so the
true text of every page is known. The OCR runs for real, on the models of the rapidocr
wheel, with the network blocked (tests/conftest.py fails any outbound connection).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop.errors import Cancelled, DocumentError
from desktop.rag import ocr
from desktop.rag.loaders import Limits, load_document
from desktop.rag.parsing import ParserWorker
from desktop.rag.types import CancelToken
from tests.helpers.scans import LEFT_IN, PAGES, line_top_pt, scan_pdf


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> Path:
    return scan_pdf(tmp_path_factory.mktemp("scans") / "harbour-report-scan.pdf")


@pytest.fixture
def http_calls(monkeypatch) -> list:
    """Every HTTP request rapidocr's downloader would make, recorded and refused."""
    from rapidocr.utils.download_file import DownloadFile

    calls = []

    def record(cls, url, logger):
        calls.append(url)
        raise OSError(f"download attempted: {url}")

    monkeypatch.setattr(DownloadFile, "_make_http_request", classmethod(record))
    return calls


def sprig(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPRIG_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "desktop.cli", *args], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def text_layer_page(text: str) -> bytes:
    """A one-page PDF with a real text layer (Helvetica), made without any PDF library's help."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    contents = DecodedStreamObject()
    contents.set_data(f"BT /F1 12 Tf 72 700 Td ({text}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(contents)
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ---------------------------------------------------------------- the acceptance check


def test_a_scanned_pdf_is_indexed_and_sprig_search_cites_the_page(scanned, sprig_home, embedder):
    """``embedder``: the shared models folder is built before the command line uses it."""
    from pypdf import PdfReader

    reader = PdfReader(scanned)
    assert [p.extract_text().strip() for p in reader.pages] == ["", "", ""]  # images only, no text layer
    assert all(len(p.images) == 1 for p in reader.pages)

    summary = json.loads(sprig("index", str(scanned), "--json", home=sprig_home).stdout)
    assert summary["indexed"] == [str(scanned)] and not summary["failed"]
    assert summary["pages"] == 3
    hits = json.loads(sprig("search", "How many nests does the pelican colony on Gull Rock have?", "--json",
                            home=sprig_home).stdout)
    assert hits[0]["path"] == str(scanned)
    assert hits[0]["page"] == 3
    assert "86 nests" in hits[0]["text"]

    # the boxes are kept where the source viewer looks for them, each with its span of the page text
    [cache] = (sprig_home / "ocr").glob("*.jsonl")
    assert cache.name == f"{ocr.file_digest(scanned)}.jsonl"
    page = ocr.page_lines(sprig_home / "ocr", scanned, 3)
    assert page is not None and page.text == "\n".join(PAGES[2])
    start = hits[0]["text"].find("86 nests")
    spans = [page.text[line.start:line.end] for line in page.lines]
    assert spans == PAGES[2]
    assert any(line.start <= hits[0]["char_start"] + start < line.end for line in page.lines)


# ---------------------------------------------------------------- pages, lines, boxes


def test_pages_keep_their_numbers_and_every_line_its_box_and_span(scanned, tmp_path, monkeypatch):
    cache = tmp_path / "ocr"
    pages = load_document(scanned, Limits(ocr_dir=str(cache)))
    assert [p.number for p in pages] == [1, 2, 3]
    assert [p.text for p in pages] == ["\n".join(lines) for lines in PAGES]
    for number, lines in enumerate(PAGES, start=1):
        page = ocr.page_lines(cache, scanned, number)
        assert [page.text[line.start:line.end] for line in page.lines] == lines
        for i, line in enumerate(page.lines):
            x0, y0, x1, y1 = line.bbox
            # where the line was drawn, in points from the page's top-left corner
            assert abs(x0 - LEFT_IN * 72) < 8, line
            assert abs(y0 - line_top_pt(i)) < 10, line
            assert 8 < y1 - y0 < 30 and x1 > x0 + 100, line
        assert page.lines_in(page.lines[1].start + 3, page.lines[1].start + 9) == [page.lines[1]]

    # read again: every page comes from the cache, OCR does not run
    def no_ocr(*args, **kwargs):
        raise AssertionError("OCR ran again on a page already read")

    monkeypatch.setattr(ocr, "read_image", no_ocr)
    assert [p.text for p in load_document(scanned, Limits(ocr_dir=str(cache)))] == [p.text for p in pages]


def test_text_pages_keep_their_layer_and_only_scanned_pages_are_read(tmp_path):
    from pypdf import PdfReader, PdfWriter

    layer = "The text layer of this page says the tide table is printed every Sunday morning."
    scan = scan_pdf(tmp_path / "one-scan.pdf", [["A scanned page about the ferry timetable"]])
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(text_layer_page(layer))).pages[0])
    writer.add_page(PdfReader(scan).pages[0])
    mixed = tmp_path / "mixed.pdf"
    with open(mixed, "wb") as handle:
        writer.write(handle)

    seen = []
    pages = load_document(mixed, Limits(ocr_dir=str(tmp_path / "ocr")), progress=lambda *p: seen.append(p))
    assert pages[0].text.strip() == layer
    assert pages[1].text == "A scanned page about the ferry timetable"
    assert seen == [(0, 1), (1, 1)]  # only the scanned page was read
    assert set(ocr.read_cache(ocr.cache_file(tmp_path / "ocr", ocr.file_digest(mixed)))) == {2}


def test_blank_pages_are_not_read_and_fail_as_before(tmp_path):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    path = tmp_path / "blank.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    seen = []
    with pytest.raises(DocumentError) as info:
        load_document(path, Limits(ocr_dir=str(tmp_path / "ocr")), progress=lambda *p: seen.append(p))
    assert info.value.code == "no_text" and "scanned PDF" in info.value.reason
    assert seen == [] and not (tmp_path / "ocr").exists()


# ---------------------------------------------------------------- never a download


def test_a_missing_or_damaged_model_is_refused_and_never_fetched(scanned, tmp_path, monkeypatch, http_calls):
    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv(ocr.MODELS_ENV, str(empty))
    with pytest.raises(DocumentError) as info:
        load_document(scanned, Limits())
    assert info.value.code == "ocr_unavailable"
    assert "PP-OCRv6_det_small.onnx is missing" in info.value.reason and "never downloads" in info.value.reason

    damaged = tmp_path / "damaged-models"
    shutil.copytree(_wheel_models(), damaged)
    rec = damaged / "PP-OCRv6_rec_small.onnx"
    data = bytearray(rec.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rec.write_bytes(bytes(data))
    monkeypatch.setenv(ocr.MODELS_ENV, str(damaged))
    with pytest.raises(DocumentError) as info:
        load_document(scanned, Limits())
    assert info.value.code == "ocr_unavailable" and "PP-OCRv6_rec_small.onnx" in info.value.reason
    assert "damaged" in info.value.reason
    assert http_calls == []


def _wheel_models() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).parent / "models"


def test_rapidocr_left_to_itself_would_download_a_missing_model_sprig_refuses(tmp_path, http_calls):
    """Why Sprig passes model paths and guards the downloader: given a models folder without
    the file, rapidocr's default set-up fetches it from the internet."""
    import numpy as np
    from rapidocr import RapidOCR

    ocr.engine()  # Sprig's reader is set up: from now on the downloader refuses
    folder = tmp_path / "models"
    folder.mkdir()
    default = RapidOCR(params={"Global.model_root_dir": str(folder), "Global.log_level": "critical"})
    with pytest.raises(DocumentError) as info:
        default(np.full((64, 256, 3), 255, dtype=np.uint8))
    assert info.value.code == "ocr_unavailable" and "never downloads" in info.value.reason
    assert "modelscope" in info.value.reason  # the address it wanted
    assert http_calls == [] and list(folder.iterdir()) == []


def test_hub_switches_in_the_environment_change_nothing(scanned, tmp_path, monkeypatch, http_calls):
    for key, value in {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://192.0.2.1",
                       "MODELSCOPE_CACHE": str(tmp_path / "ms"), "MODELSCOPE_DOMAIN": "192.0.2.1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(ocr.MODELS_ENV, raising=False)
    ocr._engine.cache_clear()
    try:
        pages = load_document(scanned, Limits())
    finally:
        ocr._engine.cache_clear()
    assert pages[0].text == "\n".join(PAGES[0])
    assert http_calls == [] and not (tmp_path / "ms").exists()


# ---------------------------------------------------------------- the parser worker


def test_progress_page_by_page_and_cancel_in_the_parser_worker(tmp_path):
    texts = [f"Page {n} of the ledger lists crate number {n}{n}7" for n in range(1, 5)]
    many = scan_pdf(tmp_path / "four-pages.pdf", [[text] for text in texts])
    limits = Limits(ocr_dir=str(tmp_path / "ocr"))
    cancel = CancelToken()
    seen: list[tuple[int, int]] = []
    cancelled_at = []

    def on_page(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 2 and not cancel.cancelled:
            cancel.cancel()
            cancelled_at.append(time.monotonic())

    worker = ParserWorker(limits, timeout_s=120)
    with pytest.raises(Cancelled):
        worker.parse(many, progress=on_page, cancel=cancel)
    assert seen == [(0, 4), (1, 4), (2, 4)]  # page by page, then the cancel
    assert time.monotonic() - cancelled_at[0] < 2.0  # stopped at once, not after the other pages
    assert worker.pid is None  # the parser process is gone

    # the pages read before the cancel are not read again; the rest follow page by page
    seen.clear()
    with ParserWorker(limits, timeout_s=120) as again:
        pages = again.parse(many, progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] >= 2 and seen[-1] == (4, 4)
    assert [b - a for (a, _), (b, _) in zip(seen, seen[1:], strict=False)] == [1] * (len(seen) - 1)
    assert [p.text for p in pages] == texts


def test_a_library_cancel_during_ocr_leaves_nothing_behind(library, scanned, tmp_path):
    cancel = CancelToken()
    events = []

    def progress(p):
        events.append(p)
        if p.stage == "parse" and p.chunks and p.chunks_done >= 1:
            cancel.cancel()

    summary = library.index([scanned], progress=progress, cancel=cancel)
    assert summary.cancelled and not summary.indexed and not summary.failed
    ocr_events = [p for p in events if p.stage == "parse" and p.chunks]
    assert ocr_events[0].message == "OCR: page 0 of 3" and ocr_events[0].pages == 3
    assert ocr_events[-1].chunks_done >= 1 and 0 < ocr_events[-1].fraction < 1
    assert library.documents() == []  # a cancelled new document leaves no trace

    summary = library.index([scanned])
    assert summary.indexed == [str(scanned)] and library.documents()[0].pages == 3
    hits = library.search("budget table of the north channel dredging", k=1)
    assert hits[0].page == 2 and "1.7 million euros" in hits[0].text
