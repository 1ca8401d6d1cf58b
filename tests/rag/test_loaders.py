"""Loaders on real files: page numbers, offsets, formats and decoding."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from desktop.errors import DocumentError
from desktop.rag.loaders import decode_text, load_document
from tests.conftest import eval_path


def test_pdf_pages_are_one_based_and_never_concatenated():
    pdf = eval_path("pdfs", "py-pdf-sample-files", "004-pdflatex-4-pages", "pdflatex-4-pages.pdf")
    pages = load_document(pdf)
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert all(p.text.strip() for p in pages)
    from pypdf import PdfReader

    raw = PdfReader(str(pdf)).pages[2].extract_text()
    assert " ".join(raw.split())[:200] == " ".join(pages[2].text.split())[:200]


def test_real_financial_pdf_keeps_every_page():
    pdf = eval_path("financebench", "pdfs", "AMCOR_2023Q4_EARNINGS.pdf")
    pages = load_document(pdf)
    assert pages[0].number == 1 and pages[-1].number == len(pages)
    assert "Amcor" in pages[0].text


def test_encrypted_pdf_gets_a_plain_reason():
    pdf = eval_path("pdfs", "py-pdf-sample-files", "005-libreoffice-writer-password")
    target = next(pdf.glob("*.pdf"))
    with pytest.raises(DocumentError) as info:
        load_document(target)
    assert info.value.code == "encrypted"
    assert "password" in info.value.reason


def test_scanned_pdf_without_text_layer_is_reported(tmp_path):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.add_blank_page(612, 792)
    path = tmp_path / "scan.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert info.value.code == "no_text"
    assert "scanned" in info.value.reason


def test_markdown_html_and_docx(tmp_path):
    md = tmp_path / "notes.md"
    md.write_text("# Title\n\nThe flux capacitor needs 1.21 gigawatts.\n", encoding="utf-8")
    assert "1.21 gigawatts" in load_document(md)[0].text

    html = tmp_path / "page.html"
    html.write_text(
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head>"
        "<body><h1>Manual</h1><p>Torque the M8 bolts to 25 Nm.</p></body></html>",
        encoding="utf-8",
    )
    text = load_document(html)[0].text
    assert "25 Nm" in text and "alert" not in text and "color" not in text

    import docx

    document = docx.Document()
    document.add_paragraph("Quarterly revenue rose to 42 million euros.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Part"
    table.rows[0].cells[1].text = "XK-4471"
    path = tmp_path / "report.docx"
    document.save(path)
    text = load_document(path)[0].text
    assert "42 million euros" in text and "XK-4471" in text


@pytest.mark.parametrize(
    "data, expected",
    [
        ("café naïve résumé".encode("cp1252"), "café naïve résumé"),
        (codecs.BOM_UTF16_LE + "Grüße aus Köln".encode("utf-16-le"), "Grüße aus Köln"),
        (codecs.BOM_UTF8 + "naïve".encode(), "naïve"),
        ("plain ascii text, nothing odd".encode("utf-16-le"), "plain ascii text, nothing odd"),
        ("日本語のテキストです。".encode(), "日本語のテキストです。"),
    ],
)
def test_text_of_unknown_encoding_is_decoded(data, expected):
    text = decode_text(data)
    assert expected in text
    assert "\x00" not in text


def test_binary_renamed_txt_is_rejected(tmp_path):
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert info.value.code == "binary"
    assert "not a text file" in info.value.reason


def test_unsupported_and_missing_files(tmp_path):
    odd = tmp_path / "archive.xyz"
    odd.write_text("x")
    with pytest.raises(DocumentError) as info:
        load_document(odd)
    assert info.value.code == "unsupported"
    with pytest.raises(DocumentError) as info:
        load_document(Path(tmp_path / "gone.pdf"))
    assert info.value.code == "missing"


@pytest.mark.parametrize("user_password, indexed", [("", True), ("s3cret", False)])
def test_aes_encrypted_pdfs(tmp_path, user_password, indexed):
    """Owner-only AES encryption (no password to open) is read; a user password is reported."""
    from pypdf import PdfReader, PdfWriter

    source = eval_path("pdfs", "py-pdf-sample-files", "004-pdflatex-4-pages", "pdflatex-4-pages.pdf")
    writer = PdfWriter(clone_from=PdfReader(str(source)))
    writer.encrypt(user_password=user_password, owner_password="owner-pw", algorithm="AES-256")
    path = tmp_path / "aes.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    if indexed:
        pages = load_document(path)
        assert len(pages) == 4 and "information" in pages[0].text
    else:
        with pytest.raises(DocumentError) as info:
            load_document(path)
        assert info.value.code == "encrypted" and "password" in info.value.reason


def test_pages_that_raise_make_a_pdf_damaged_not_scanned(tmp_path, monkeypatch):
    """A PDF whose text pages fail to parse (e.g. arrays nested past the recursion limit) and
    whose other pages are blank is reported as damaged, not as a scan that needs OCR."""
    from pypdf import PdfWriter

    from desktop.errors import DocumentError
    from desktop.rag.loaders import Limits, load_pdf

    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(200, 200)
    path = tmp_path / "nested.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    from pypdf import PageObject

    real = PageObject.extract_text
    calls = {"n": 0}

    def extract(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RecursionError("maximum recursion depth exceeded")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", extract)
    with pytest.raises(DocumentError) as info:
        load_pdf(path, Limits())
    assert info.value.code == "damaged" and "1 of 3 pages could not be read" in info.value.reason
