"""Loaders on real files: page numbers, offsets, formats and decoding."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from desktop.errors import DocumentError
from desktop.rag.loaders import SUPPORTED_SUFFIXES, Limits, decode_text, is_supported, load_document
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


# ------------------------------------------------------------------ HTML

FIXTURES = Path(__file__).parent / "fixtures"
SAVED_PAGE = FIXTURES / "saved-docs-page.html"


def _leaf_blocks(html: str) -> list[str]:
    """The text of every paragraph, list item, heading and cell that holds no other block."""
    import re

    import lxml.html

    tree = lxml.html.document_fromstring(html)
    for hidden in tree.xpath("//script|//style|//*[@style='display: none']"):
        hidden.drop_tree()
    blocks = []
    for element in tree.iter("p", "li", "h1", "h2", "h3", "td", "th", "dt", "dd"):
        if any(d.tag in ("p", "li", "ul", "ol", "div", "table") for d in element.iterdescendants()):
            continue
        text = re.sub(r"\s+", " ", element.text_content()).strip()
        if text:
            blocks.append(text)
    return blocks


def test_html_keeps_inline_markup_inside_its_line():
    """A saved documentation page: links, code, emphasis and entities stay in their sentence,
    every paragraph, list item, heading and cell is one line, table rows read "a | b | c"."""
    html = SAVED_PAGE.read_text(encoding="utf-8")
    text = load_document(SAVED_PAGE)[0].text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    blocks = _leaf_blocks(html)
    assert len(blocks) > 25
    for block in blocks:
        assert any(block in line for line in lines), f"split or lost: {block!r}"
    assert ("Every wheel is held by five M12×1.5 bolts. Tighten them with a calibrated torque wrench "
            "to 110 N·m, in the star pattern shown in Figure 3, and never with an impact driver.") in lines
    assert "Alloy wheels need the bolts with the conical seat (part number WB-4471-C); the ball-seat " \
           "bolts of the steel wheels loosen within the first 100 km." in lines
    assert "Fastener | Thread | Torque" in lines and "Brake caliper bracket | M10 | 65 N·m" in lines
    assert "$ manual print --table torques" in lines and "$ manual print --log" in lines
    # paragraphs are set apart by a blank line (a paragraph break for the chunker)
    assert "\n\nRe-check the torque after the first 50 km." in text
    # the title leads; scripts, styles and the hidden search box are gone
    assert lines[0] == "Wheel bolts and torque settings — Workshop Manual 4.2 documentation"
    for absent in ("gtag", "dataLayer", "text-align", "Quick search", "getElementById"):
        assert absent not in text


def test_html_lists_and_cells_never_run_together(tmp_path):
    """Block boundaries separate words; inline boundaries do not add spaces inside words."""
    path = tmp_path / "blocks.htm"
    path.write_text(
        "<ul><li>alpha</li><li>beta<ul><li>nested</li></ul></li></ul><ol><li>first</li><li>second</li></ol>"
        "<table><tr><td>x1</td><td>y1</td></tr><tr><td>x2</td><td>y2<br>more</td></tr></table>"
        "<p>fi<span>r</span>st <b>bold</b>-<i>italic</i></p><dl><dt>term</dt><dd>meaning</dd></dl>"
        "<h2>Heading</h2>text after<div>block</div>tail",
        encoding="utf-8",
    )
    lines = [line.strip() for line in load_document(path)[0].text.splitlines() if line.strip()]
    assert lines == ["- alpha", "- beta", "- nested", "1. first", "2. second", "x1 | y1",
                     "x2 | y2 more", "first bold-italic", "term", "meaning", "Heading",
                     "text after", "block", "tail"]


def test_deeply_nested_html_keeps_every_word(tmp_path):
    """lxml stops at 256 levels; such a file is read by the plain parser instead, losing nothing."""
    path = tmp_path / "nested.html"
    path.write_text("<p>before the nest</p>" + "<div><b>" * 20_000 + "deep inside"
                    + "</b></div>" * 20_000 + "<p>after the nest</p>", encoding="utf-8")
    text = load_document(path)[0].text
    for words in ("before the nest", "deep inside", "after the nest"):
        assert words in text


def test_html_table_with_one_huge_cell_is_not_padded(tmp_path):
    """Rows are never padded to the widest cell: 20,000 rows under a 100,000-character cell."""
    import time

    path = tmp_path / "wide.html"
    path.write_text("<table><tr><td>" + "x" * 100_000 + "</td><td>head</td></tr>"
                    + "<tr><td>a</td><td>b</td></tr>" * 20_000 + "</table>", encoding="utf-8")
    started = time.perf_counter()
    text = load_document(path)[0].text
    assert time.perf_counter() - started < 20
    assert len(text) < 250_000
    assert text.count("a | b") == 20_000


def test_xhtml_entities_are_not_expanded(tmp_path):
    """Entities declared inside the file (billion laughs) are never expanded; named HTML
    entities of XHTML (&nbsp;, &eacute;) are understood without fetching the DTD."""
    import time

    from tests.helpers.books import BILLION_LAUGHS_DOCTYPE

    bomb = tmp_path / "laughs.xhtml"
    bomb.write_text('<?xml version="1.0"?>' + BILLION_LAUGHS_DOCTYPE
                    + '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>Keep &f; calm and '
                      "carry on.</p></body></html>", encoding="utf-8")
    started = time.perf_counter()
    text = load_document(bomb)[0].text
    assert time.perf_counter() - started < 5
    assert "carry on" in text and len(text) < 10_000

    named = tmp_path / "named.xhtml"
    named.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
        '"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title/></head><body><p>Caf&eacute; at 10&nbsp;am &amp; <em>d&eacute;j&agrave; vu</em>.</p>"
        "<div/><p>Second paragraph.</p></body></html>", encoding="utf-8")
    text = load_document(named)[0].text
    assert "Café at 10 am & déjà vu." in text.splitlines() and "Second paragraph." in text


# ------------------------------------------------------------------ DOCX


def test_docx_tables_stay_where_they_are(tmp_path):
    """Paragraphs and tables in document order; a row is one line; a merged cell counts once;
    the paragraphs of a cell and a table nested in it stay in that row."""
    import docx

    document = docx.Document()
    document.add_paragraph("Before the table: torque values follow.")
    table = document.add_table(rows=3, cols=3)
    for cell, value in zip(table.rows[0].cells, ("Fastener", "Thread", "Torque"), strict=True):
        cell.text = value
    for cell, value in zip(table.rows[1].cells, ("Wheel bolt", "M12", "110 N·m"), strict=True):
        cell.text = value
    merged = table.cell(2, 0).merge(table.cell(2, 1))
    merged.text = "All other bolts"
    last = table.cell(2, 2)
    last.text = "see the"
    last.add_paragraph("service sheet")
    inner = last.add_table(rows=1, cols=2)
    inner.cell(0, 0).text = "sheet"
    inner.cell(0, 1).text = "S-7"
    document.add_paragraph("After the table: re-check after 50 km.")
    path = tmp_path / "order.docx"
    document.save(str(path))

    lines = load_document(path)[0].text.splitlines()
    assert lines == [
        "Before the table: torque values follow.",
        "Fastener | Thread | Torque",
        "Wheel bolt | M12 | 110 N·m",
        "All other bolts | see the service sheet sheet | S-7",
        "After the table: re-check after 50 km.",
    ]


# ------------------------------------------------------------------ PDF fonts


def test_cff_fonts_of_latex_pdfs_are_decoded(tmp_path):
    """GeoTopo (pdfLaTeX, fonts re-embedded as CFF without a ToUnicode map): with fontTools
    installed pypdf reads the font's own encoding, so ∈, ∩, ∅ and braces come out right
    (without it they read '2', '\\', ';' and 'f', 'g')."""
    from pypdf import PdfReader, PdfWriter

    source = eval_path("pdfs", "py-pdf-sample-files", "009-pdflatex-geotopo", "GeoTopo-komprimiert.pdf")
    writer = PdfWriter()
    writer.add_page(PdfReader(str(source)).pages[5])
    path = tmp_path / "geotopo-page-6.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    text = load_document(path)[0].text
    assert "Sind U1,U2 ∈ T, so ist U1 ∩U2 ∈ T" in text
    assert "Ttriv = {∅,X}" in text
    assert "U1;U2 2 T" not in text


# ------------------------------------------------------------------ EPUB


def test_epub_chapters_are_pages_in_reading_order(tmp_path):
    """Page N is the Nth document of the spine (the cover, an image only, is page 1), in the
    spine's order, not the files' names; hrefs with %20 resolve; inline text stays together."""
    from tests.helpers.books import BOLTS, BRAKES, WRENCH, write_epub

    path = write_epub(tmp_path / "notes.epub", [BOLTS, BRAKES, WRENCH],
                      spine_order=["ch02.xhtml", "ch 03.xhtml", "ch01.xhtml"])
    pages = load_document(path)
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert pages[0].text == ""
    assert pages[1].text.startswith("Chapter 2. Brake pads")
    assert pages[2].text.startswith("Chapter 3. The torque wrench")
    assert pages[3].text.startswith("Chapter 1. Wheel bolts")
    lines = pages[3].text.splitlines()
    assert "Tighten the M12 wheel bolts to 110 N·m with a calibrated wrench, in a star pattern." in lines
    assert "Axle | Minimum lining" in pages[1].text.splitlines()
    assert "- Grease the pins with silicone grease." in [line.strip() for line in pages[1].text.splitlines()]
    assert is_supported(Path("Book.EPUB")) and ".epub" in SUPPORTED_SUFFIXES


def test_epub_made_by_pandoc():
    """A book another tool wrote (pandoc 2.17 from pandoc-garden.md; EPUBCheck finds no issue)."""
    pages = load_document(FIXTURES / "pandoc-garden.epub")
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].text.splitlines()[0] == "Garden handbook"
    soil = pages[1].text.splitlines()
    assert ("Potatoes grow best in loose, slightly acid soil with a pH of 5.0 to 6.0; water them "
            "as in Watering.") in soil
    assert "Potato | 5.0–6.0" in soil
    assert "Water the beds in the early morning, about 25 litres per square metre a week." in pages[2].text


def test_epub_chapter_is_cited_by_number(tmp_path, library):
    """Indexed through the sandboxed parser: a question finds its chapter, cited as its page."""
    from tests.helpers.books import BOLTS, BRAKES, WRENCH, write_epub

    path = write_epub(tmp_path / "workshop.epub", [BOLTS, BRAKES, WRENCH])
    summary = library.index([path])
    assert not summary.failed, summary.failed
    hits = library.search("how often should the click-type torque wrench be calibrated", k=3)
    assert hits[0].path == str(path) and hits[0].page == 4
    assert "5000 cycles" in hits[0].text


def _book(tmp_path, name="book.epub", **kwargs) -> Path:
    from tests.helpers.books import BOLTS, BRAKES, write_epub

    return write_epub(tmp_path / name, [BOLTS, BRAKES], **kwargs)


def test_epub_zip_bombs_are_refused_before_inflating(tmp_path):
    import time

    from tests.helpers.books import text_bomb_chapter, understate_size

    bomb = _book(tmp_path, "bomb.epub", replace_parts={"OEBPS/Text/ch02.xhtml": text_bomb_chapter(60)})
    assert bomb.stat().st_size < 400_000
    started = time.perf_counter()
    with pytest.raises(DocumentError) as info:
        load_document(bomb)
    assert time.perf_counter() - started < 1.0
    assert info.value.code == "zip_bomb" and info.value.reason.startswith("archive expands too much")

    lying = _book(tmp_path, "lying.epub", replace_parts={"OEBPS/Text/ch02.xhtml": text_bomb_chapter(2)})
    understate_size(lying, "OEBPS/Text/ch02.xhtml")
    with pytest.raises(DocumentError) as info:
        load_document(lying)
    assert info.value.code == "zip_bomb"
    assert "ch02.xhtml inflates beyond" in info.value.reason

    with pytest.raises(DocumentError) as info:
        load_document(_book(tmp_path, "parts.epub"), Limits(max_epub_members=5))
    assert info.value.code == "zip_bomb" and "too many parts" in info.value.reason


def test_epub_entities_are_never_expanded(tmp_path):
    """Billion laughs: in the package file the book is refused; in a chapter that chapter is
    read without the entities while the others are read as usual."""
    import time

    from tests.helpers.books import BILLION_LAUGHS_DOCTYPE, chapter_xhtml

    package = _book(tmp_path, "opf.epub").read_bytes()  # reuse the real package text
    import io
    import zipfile

    opf = zipfile.ZipFile(io.BytesIO(package)).read("OEBPS/content.opf").decode()
    laughing_opf = opf.replace("<package", BILLION_LAUGHS_DOCTYPE.replace("html", "package", 1)
                               + "<package", 1).replace("<dc:title>Workshop notes", "<dc:title>&f;")
    bad = _book(tmp_path, "laughs-opf.epub", replace_parts={"OEBPS/content.opf": laughing_opf.encode()})
    started = time.perf_counter()
    with pytest.raises(DocumentError) as info:
        load_document(bad)
    assert time.perf_counter() - started < 2.0
    assert info.value.code == "damaged" and "package file is not valid XML" in info.value.reason

    chapter = chapter_xhtml("Laughs", "<p>Keep &f; calm.</p><p>The end of the joke.</p>")
    chapter = chapter.replace(b"<!DOCTYPE html>", BILLION_LAUGHS_DOCTYPE.encode())
    book = _book(tmp_path, "laughs-chapter.epub", replace_parts={"OEBPS/Text/ch02.xhtml": chapter})
    started = time.perf_counter()
    pages = load_document(book)
    assert time.perf_counter() - started < 2.0
    assert "The end of the joke." in pages[2].text and len(pages[2].text) < 5_000
    assert "110 N·m" in pages[1].text


@pytest.mark.parametrize("href", [
    "../../../../etc/passwd",
    "/etc/passwd",
    "Text/../../../secret.xhtml",
    "http://attacker.invalid/chapter.xhtml",
    "file:///etc/passwd",
])
def test_epub_references_outside_the_book_are_refused(tmp_path, href):
    path = _book(tmp_path, hrefs={"ch02.xhtml": href})
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert info.value.code == "damaged"
    assert info.value.reason.startswith("damaged EPUB (a chapter points outside the book")


def test_epub_archive_names_that_climb_out_are_never_followed(tmp_path):
    """A zip entry named ../evil.xhtml (zip slip) referenced from a package at the root, and a
    container that points its package file outside the book."""
    from tests.helpers.books import chapter_xhtml

    path = _book(tmp_path, "slip.epub", package_path="content.opf",
                 hrefs={"ch02.xhtml": "../evil.xhtml"},
                 extra_parts={"../evil.xhtml": chapter_xhtml("Evil", "<p>outside</p>")})
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert "points outside the book" in info.value.reason

    from tests.helpers.books import CONTAINER

    path = _book(tmp_path, "container.epub",
                 replace_parts={"META-INF/container.xml": CONTAINER % b"../../content.opf"})
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert "points outside the book" in info.value.reason


def test_damaged_and_protected_epubs_get_plain_reasons(tmp_path):
    junk = tmp_path / "junk.epub"
    junk.write_bytes(b"PK\x03\x04 not really an archive" + bytes(200))
    cases = {
        junk: ("damaged", "damaged EPUB (not a valid archive"),
        _book(tmp_path, "drm.epub", encrypted=["OEBPS/Text/ch01.xhtml", "OEBPS/Text/ch02.xhtml"]):
            ("encrypted", "DRM-protected EPUB"),
        _book(tmp_path, "no-package.epub", with_container=False, package_path="OEBPS/package.xml"):
            ("damaged", "damaged EPUB (no package file"),
        _book(tmp_path, "bad-opf.epub", replace_parts={"OEBPS/content.opf": b"<package><manifest>"}):
            ("damaged", "damaged EPUB (its package file is not valid XML"),
        _book(tmp_path, "no-spine.epub", replace_parts={"OEBPS/content.opf": (
            b'<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><manifest/><spine/></package>')}):
            ("damaged", "damaged EPUB (its reading order lists no chapters)"),
    }
    for path, (code, reason) in cases.items():
        with pytest.raises(DocumentError) as info:
            load_document(path)
        assert info.value.code == code, (path.name, info.value.reason)
        assert info.value.reason.startswith(reason), (path.name, info.value.reason)


def test_epub_without_container_and_with_a_missing_chapter_still_reads(tmp_path):
    """No META-INF/container.xml but a single package file: it is found; a chapter listed but
    missing from the archive is an empty page, the others keep their numbers."""
    import zipfile

    path = _book(tmp_path, with_container=False)
    rebuilt = tmp_path / "missing.epub"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            if item.filename != "OEBPS/Text/ch01.xhtml":
                target.writestr(item, source.read(item.filename))
    pages = load_document(rebuilt)
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[1].text == "" and pages[2].text.startswith("Chapter 2. Brake pads")


def test_mangled_epubs_only_raise_document_errors(tmp_path):
    """Fuzz: 40 truncations and byte flips of a good book."""
    import random

    rnd = random.Random(3)
    data = _book(tmp_path).read_bytes()
    path = tmp_path / "fuzz.epub"
    for i in range(40):
        blob = bytearray(data[: rnd.randrange(1, len(data))] if i % 2 else data)
        for _ in range(rnd.randrange(1, 12)):
            blob[rnd.randrange(len(blob))] = rnd.randrange(256)
        path.write_bytes(bytes(blob))
        try:
            pages = load_document(path)
        except DocumentError as exc:
            assert exc.code in {"damaged", "no_text", "zip_bomb", "encrypted"}, (exc.code, exc.reason)
            assert "Traceback" not in exc.reason and len(exc.reason) < 200
        else:
            assert all("\x00" not in p.text for p in pages)



def test_typesetting_stand_ins_are_spelled_plainly_so_typed_questions_find_them(tmp_path, library):
    # what typeset manuals put in their text layer: ligatures, the minus sign for "-", a
    # small tilde for "~", a soft hyphen inside a word
    manual = tmp_path / "manual.txt"
    manual.write_text(
        "\u2212\u2212strip\u2212components=NUMBER\n"
        "Strip NUMBER leading components from \ufb01le names on extraction.\n\n"
        "The user con\ufb01guration lives in \u02dc/.ssh/con\ufb01g and is read \ufb01rst.\n"
        "Back\u00adups keep the suf\ufb01x \u02dc unless told otherwise.\n",
        encoding="utf-8",
    )
    text = load_document(manual)[0].text
    assert "--strip-components=NUMBER" in text and "file names" in text
    assert "~/.ssh/config" in text and "Backups keep the suffix ~" in text
    assert not any(ord(ch) > 127 for ch in text)
    library.index([manual])
    hits = library.search("--strip-components", k=1, mode="keyword")
    assert hits and "--strip-components" in hits[0].text
    hits = library.search("user configuration file", k=1, mode="keyword")
    assert hits and "~/.ssh/config" in hits[0].text
