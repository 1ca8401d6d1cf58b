"""Turn a file into page texts. Each loader raises DocumentError with a plain reason.

These functions run inside the parser worker process (see ``desktop.rag.parsing``), so a
file that hangs or crashes a parser never takes the app with it.
"""

from __future__ import annotations

import codecs
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from desktop.errors import DocumentError
from desktop.rag.types import PageText

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".log", ".csv", ".tsv"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx", ".epub"}


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 200 * 1024 * 1024
    max_text_file_bytes: int = 50 * 1024 * 1024
    max_pages: int = 5000
    max_chars: int = 20_000_000
    # DOCX and EPUB (zip) archives
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: float = 100.0
    max_zip_members: int = 1000
    max_epub_members: int = 10_000  # a book split into many small chapter files and images
    # scanned PDF pages: OCR them (desktop.rag.ocr); keep what was read in this folder (by the
    # file's sha256) so a cancelled job resumes and the source viewer finds the line boxes
    ocr: bool = True
    ocr_dir: str | None = None


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n < 1024**3 else f"{n / 1024**3:.1f} GB"


def check_size(path: Path, limits: Limits) -> int:
    """Reject a file before reading it: missing, not a regular file, empty, or over the size limit.

    A FIFO, socket or device named like a document would block (or never end) when read,
    so only regular files are ever opened.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DocumentError("missing", "file not found") from None
    except OSError as exc:
        raise DocumentError("unreadable", f"cannot read the file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DocumentError("not_a_file", f"not a regular file ({_file_kind(st.st_mode)}): it is not read")
    size = st.st_size
    limit = limits.max_file_bytes
    if path.suffix.lower() in TEXT_SUFFIXES | HTML_SUFFIXES:
        limit = min(limit, limits.max_text_file_bytes)
    if size > limit:
        raise DocumentError("too_large", f"file too large ({_mb(size)} > {_mb(limit)} limit)")
    if size == 0:
        raise DocumentError("empty", "the file is empty")
    return size


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def load_document(path: Path, limits: Limits | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[PageText]:
    """Pages of ``path`` with their text; never empty (raises DocumentError instead).

    ``progress(done, total)`` follows the OCR of a PDF's scanned pages, page by page.
    """
    limits = limits or Limits()
    path = Path(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise DocumentError("unsupported", f"unsupported file type '{suffix or path.name}'")
    check_size(path, limits)
    pages = load_pdf(path, limits, progress) if loader is load_pdf else loader(path, limits)
    pages = [PageText(p.number, clean_text(p.text)) for p in pages]
    total = sum(len(p.text) for p in pages)
    if total > limits.max_chars:
        raise DocumentError("too_large", f"too much text ({total:,} characters > {limits.max_chars:,})")
    if not any(p.text.strip() for p in pages):
        if suffix == ".pdf":
            raise DocumentError(
                "no_text", "no text layer: this looks like a scanned PDF, and OCR is turned off"
            )
        raise DocumentError("no_text", "the file contains no text")
    return pages


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")


# typesetting stand-ins a reader types otherwise: ligatures ("ﬁle"), the minus sign and
# hyphens manuals print for "-" ("−−verbose"), and the small tilde and asterisk operator for
# "~" and "*"; invisible soft hyphens and zero-width spaces go. A question typed with plain
# letters then matches the text by keyword, by embedding and in the grounding checks.
# (one character for one, so a PDF's own text can be matched by position: see the viewer)
PLAIN_SIGNS = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2212": "-",
                             "\u02dc": "~", "\u2217": "*", "\u02c6": "^"})
_TYPESET = {**PLAIN_SIGNS, **str.maketrans({
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "st", "\ufb06": "st",
    "\u00ad": None, "\u200b": None, "\ufeff": None,
})}


def clean_text(text: str) -> str:
    """Drop NULs and control characters, spell typesetting stand-ins plainly, fold runs of
    spaces; keep line structure."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = text.translate(_TYPESET)
    text = _SPACES.sub(" ", text)
    return text


# ---------------------------------------------------------------- PDF


def load_pdf(path: Path, limits: Limits, progress: Callable[[int, int], None] | None = None) -> list[PageText]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")  # opens PDFs that only restrict printing or copying
            except DependencyError:
                raise DocumentError(
                    "encrypted", "encrypted PDF (AES): install the 'cryptography' package to open it"
                ) from None
            except Exception:  # noqa: BLE001 - pypdf raises many kinds here
                ok = 0
            if not ok:
                raise DocumentError("encrypted", "encrypted PDF: it needs a password to open")
        count = len(reader.pages)
    except (DocumentError, MemoryError):
        raise  # MemoryError: the worker reports "needs too much memory", not "damaged"
    except FileNotDecryptedError:
        raise DocumentError("encrypted", "encrypted PDF: it needs a password to open") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise DocumentError("damaged", f"damaged PDF ({_short(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - pypdf leaves catching to the caller
        raise DocumentError("damaged", f"damaged PDF ({_short(exc)})") from None
    if count == 0:
        raise DocumentError("damaged", "damaged PDF (no pages)")
    if count > limits.max_pages:
        raise DocumentError("too_large", f"too many pages ({count:,} > {limits.max_pages:,})")
    pages: list[PageText] = []
    failed: set[int] = set()
    for number in range(1, count + 1):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - one bad page must not lose the others
            failed.add(number)
            text = ""
        pages.append(PageText(number, text))
    del reader
    if len(failed) == count:
        raise DocumentError("damaged", "damaged PDF (no page could be read)")
    if failed and not any(p.text.strip() for p in pages):
        # pages that raise (deeply nested arrays, broken streams) are damage, not a missing text layer
        raise DocumentError("damaged", f"damaged PDF ({len(failed)} of {count} pages could not be read, "
                                       "the others hold no text)")
    if limits.ocr:
        pages = _ocr_scanned_pages(path, pages, failed, limits, progress)
    return pages


def _ocr_scanned_pages(path: Path, pages: list[PageText], failed: set[int], limits: Limits,
                       progress: Callable[[int, int], None] | None) -> list[PageText]:
    """Pages with no text layer (or almost none) get the text OCR reads on them."""
    from desktop.rag.ocr import MIN_TEXT_CHARS, ocr_pdf, text_chars

    scanned = [p.number for p in pages if p.number not in failed and text_chars(p.text) < MIN_TEXT_CHARS]
    if not scanned:
        return pages
    read = ocr_pdf(path, scanned, limits.ocr_dir, progress)
    out = []
    for page in pages:
        ocr = read.get(page.number)
        if ocr is not None and text_chars(ocr.text) > text_chars(page.text):
            page = PageText(page.number, ocr.text)
        out.append(page)
    if not any(p.text.strip() for p in out):
        raise DocumentError("no_text", "no text layer, and OCR found no text on its pages (a blank or "
                                       "unreadable scanned PDF)")
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


# ---------------------------------------------------------------- text


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding: BOM, then UTF-8, then detection, then cp1252.

    Raises DocumentError('binary') for data that is not text at all.
    """
    for signature, kind in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise DocumentError("binary", f"not a text file (it is {kind})")
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    head = data[:8192]
    if b"\x00" in head:
        guessed = _utf16_without_bom(head)
        if guessed is None:
            raise DocumentError("binary", "not a text file (it holds binary data)")
        return data.decode(guessed, errors="replace")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = _mostly_utf8(data)
        if text is None:
            text = _decode_legacy(data)
    sample = text[:8192]
    if sample:
        controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
        bad = sample.count("\ufffd")
        if (controls + bad) / len(sample) > 0.3:
            raise DocumentError("binary", "not a text file (it holds binary data)")
    return text


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a BOM has a NUL in every other byte for Latin text."""
    if len(head) < 4:
        return None
    even = head[0::2]
    odd = head[1::2]
    for zeros, encoding in ((odd, "utf-16-le"), (even, "utf-16-be")):
        if zeros.count(0) / len(zeros) > 0.9:
            text = head[: len(head) // 2 * 2].decode(encoding, errors="replace")
            printable = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
            if printable / max(1, len(text)) > 0.95:
                return encoding
    return None


_BINARY_SIGNATURES = (
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "a program"),
)


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with a few damaged bytes: decode it with replacement characters.

    A legacy 8-bit file is invalid UTF-8 at (nearly) every non-ASCII byte; a damaged UTF-8
    file is valid almost everywhere. Only the second kind is decoded here.
    """
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 127) - bad
    if good > 0 and bad <= max(1, good // 10):
        return text
    return None


def _decode_legacy(data: bytes) -> str:
    try:
        from charset_normalizer import from_bytes

        results = from_bytes(data[:200_000])
        best = results.best()
        if best is not None and best.encoding:
            encoding = best.encoding
            # single-byte code pages often tie; Western European cp1252 is by far the most common
            for match in results:
                if (match.encoding == "cp1252" and match.chaos <= best.chaos
                        and match.coherence >= best.coherence):
                    encoding = "cp1252"
            return data.decode(encoding, errors="replace")
    except Exception:  # noqa: BLE001 - detection is best effort
        pass
    return data.decode("cp1252", errors="replace")


def load_text(path: Path, limits: Limits) -> list[PageText]:
    return [PageText(None, decode_text(path.read_bytes()))]


# ---------------------------------------------------------------- HTML

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_HIDDEN_TAGS = ("script", "style", "noscript", "template", "svg", "iframe")
_BLANK_RUNS = re.compile(r"\n(?:[ \t]*\n)+")
_WHITESPACE = re.compile(r"\s+")
# tags that start a new line; inside a table cell they make it a block of its own
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "details",
    "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "legend", "li", "listing", "main",
    "menu", "nav", "ol", "p", "plaintext", "pre", "section", "summary", "table", "ul", "xmp",
})
_TABLE_PARTS = ("table", "thead", "tbody", "tfoot", "tr", "caption")


def load_html(path: Path, limits: Limits) -> list[PageText]:
    data = path.read_bytes()
    if path.suffix.lower() == ".xhtml":
        return [PageText(None, xhtml_to_text(data, with_title=True))]
    return [PageText(None, html_to_text(decode_text(data)))]


def html_to_text(html: str, with_title: bool = True) -> str:
    """The text a reader sees: inline tags (links, code, emphasis) stay inside their line,
    blocks (paragraphs, headings, list items) start new lines, paragraphs are separated by a
    blank line and a table row becomes one line, its cells separated by " | "."""
    tree = _parse_html(html)
    if tree is None:
        return _flat_html_text(html)
    return _tree_text(tree, with_title)


def xhtml_to_text(data: bytes, with_title: bool = False) -> str:
    """XHTML (EPUB chapters, .xhtml files) is read as XML, without loading a DTD or expanding
    entities declared in the file; named HTML entities such as &nbsp; are understood. A
    file that is not well-formed XML is read as HTML instead."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True,
                             remove_comments=True, remove_pis=True, huge_tree=False)
    try:
        root = etree.fromstring(_named_entities_as_numbers(data), parser)
    except (etree.XMLSyntaxError, ValueError):
        return html_to_text(decode_text(data), with_title)
    if root is None or not isinstance(root.tag, str):
        return ""
    etree.strip_tags(root, etree.Entity)  # undeclared or file-declared entities: dropped, unexpanded
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    return _tree_text(root, with_title)


_ENTITY_REF = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})


def _named_entities_as_numbers(data: bytes) -> bytes:
    from html.entities import name2codepoint

    def replace(match: re.Match) -> bytes:
        name = match.group(1)
        if name in _XML_ENTITIES:
            return match.group(0)
        code = name2codepoint.get(name.decode("ascii"))
        return b"&#%d;" % code if code is not None else match.group(0)

    return _ENTITY_REF.sub(replace, data)


def _parse_html(html: str):
    """An lxml tree, or None where lxml cannot take the whole document (nested too deeply:
    libxml2 stops at 256 levels, and its tree would silently lose the rest)."""
    from lxml import etree
    from lxml import html as lxml_html

    html = _XML_DECLARATION.sub("", _CONTROL.sub("", html), count=1)
    if not html.strip():
        return None
    parser = lxml_html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    try:
        tree = lxml_html.document_fromstring(html, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    if any(entry.type_name == "ERR_RESOURCE_LIMIT" for entry in parser.error_log):
        return None
    return tree


def _tree_text(root, with_title: bool) -> str:
    from inscriptis.html_engine import Inscriptis
    from lxml import etree

    title = _WHITESPACE.sub(" ", root.findtext("head/title") or "").strip() if with_title else ""
    etree.strip_elements(root, *_HIDDEN_TAGS, with_tail=False)
    _tables_as_lines(root)
    text = Inscriptis(root, _inscriptis_config()).get_text()
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    if title and title not in text[: len(title) + 2000]:
        text = f"{title}\n\n{text}"
    return text


def _tables_as_lines(root) -> None:
    """A table row becomes one line "a | b | c" (paragraphs inside a cell are joined with
    spaces); a cell that holds lists, headings, code or a nested table, or runs long, is a
    layout cell and keeps its blocks. Nothing is padded to a column width, so one long cell
    cannot blow every row up to its width."""
    for row in list(root.iter("tr")):
        previous_inline = False
        for cell in [c for c in row if c.tag in ("td", "th")]:
            if _is_layout_cell(cell):
                cell.tag = "div"
                previous_inline = False
                continue
            for inner in list(cell.iterdescendants()):
                if isinstance(inner.tag, str) and inner.tag in _BLOCK_TAGS:
                    inner.tag = "span"
                    inner.text = " " + (inner.text or "")
                    inner.tail = " " + (inner.tail or "")
            cell.tag = "span"
            if previous_inline:
                cell.text = " | " + (cell.text or "")
            previous_inline = True
    for element in list(root.iter(*_TABLE_PARTS)):
        element.tag = "div"
    for element in list(root.iter("colgroup", "col")):
        element.getparent().remove(element)


_LAYOUT_TAGS = frozenset({"table", "ul", "ol", "dl", "pre", "h1", "h2", "h3", "h4", "h5", "h6",
                          "blockquote", "section", "article", "nav", "form"})
_LAYOUT_CELL_CHARS = 600


def _is_layout_cell(cell) -> bool:
    if any(isinstance(d.tag, str) and d.tag in _LAYOUT_TAGS for d in cell.iterdescendants()):
        return True
    size = 0
    for piece in cell.itertext():
        size += len(piece)
        if size > _LAYOUT_CELL_CHARS:
            return True
    return False


def _inscriptis_config():
    from inscriptis.model.config import ParserConfig
    from inscriptis.model.tag import CustomHtmlTagHandlerMapping

    # every unordered list gets "- " bullets (inscriptis cycles through "*", "+", "o", "-")
    bullets = CustomHtmlTagHandlerMapping({"ul": _dash_list_start}, {})
    return ParserConfig(css=_inscriptis_css().copy(), custom_html_tag_handler_mapping=bullets)


def _dash_list_start(state, attributes: dict) -> None:
    state.li_counter.append("- ")


@lru_cache(maxsize=1)
def _inscriptis_css() -> dict:
    """Inscriptis' strict (browser default) profile: no spaces added around inline tags, which
    its relaxed profile does (it splits words such as ``python<var>X</var>`` and code), and
    every block tag of HTML a block."""
    from inscriptis.css_profiles import CSS_PROFILES
    from inscriptis.html_properties import Display
    from inscriptis.model.html_element import HtmlElement

    css = CSS_PROFILES["strict"].copy()
    for tag in _BLOCK_TAGS - set(css) - {"br", "table"}:
        css[tag] = HtmlElement(display=Display.block)
    return css


def _flat_html_text(html: str) -> str:
    """For documents lxml cannot take whole: every text node of Python's own parser on its line."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(list(_HIDDEN_TAGS)):
        tag.decompose()
    text = soup.get_text("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return text.strip()


# ---------------------------------------------------------------- DOCX and EPUB (zip)

# the parts that are inflated up front to catch headers that lie: the XML and XHTML read later
_INFLATED_PARTS = (".xml", ".rels", ".opf", ".ncx", ".xhtml", ".html", ".htm")


def _archive_kind(path: Path) -> str:
    return path.suffix.lstrip(".").upper() or "archive"


def check_zip(path: Path, limits: Limits) -> None:
    """Reject zip bombs from the central directory alone, before anything is inflated."""
    kind = _archive_kind(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError("damaged", f"damaged {kind} (not a valid archive: {_short(exc)})") from None
    max_members = limits.max_epub_members if kind == "EPUB" else limits.max_zip_members
    if len(members) > max_members:
        raise DocumentError("zip_bomb", f"archive has too many parts ({len(members):,})")
    total = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members) or 1
    if total > limits.max_unzipped_bytes or total / packed > limits.max_zip_ratio:
        raise DocumentError(
            "zip_bomb",
            f"archive expands too much ({_mb(total)} from {_mb(packed)}, ratio {total / packed:.0f}:1)",
        )
    _check_declared_sizes(path, members, kind)


def _check_declared_sizes(path: Path, members: list[zipfile.ZipInfo], kind: str = "DOCX") -> None:
    """Headers can lie: inflate each XML part, stopping one byte past its declared size.

    Memory stays at one block; a part that inflates beyond what the central directory
    declares is a bomb in disguise.
    """
    import zlib

    with open(path, "rb") as handle:
        for member in members:
            if member.compress_type != zipfile.ZIP_DEFLATED:
                continue
            if not member.filename.lower().endswith(_INFLATED_PARTS):
                continue
            handle.seek(member.header_offset)
            local = handle.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise DocumentError("damaged", f"damaged {kind} (broken archive entry)")
            skip = int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
            handle.seek(skip, 1)
            inflater = zlib.decompressobj(-15)
            left = member.compress_size
            produced = 0
            try:
                while left > 0 and produced <= member.file_size:
                    block = handle.read(min(left, 1 << 16))
                    if not block:
                        break
                    left -= len(block)
                    while block and produced <= member.file_size:
                        out = inflater.decompress(block, member.file_size - produced + 1)
                        produced += len(out)
                        block = inflater.unconsumed_tail
            except zlib.error:
                raise DocumentError("damaged", f"damaged {kind} (cannot inflate {member.filename})") from None
            if produced > member.file_size:
                raise DocumentError(
                    "zip_bomb",
                    f"archive expands too much ({member.filename} inflates beyond the "
                    f"{_mb(member.file_size)} its header declares)",
                )


def load_docx(path: Path, limits: Limits) -> list[PageText]:
    check_zip(path, limits)
    try:
        import docx  # python-docx

        document = docx.Document(str(path))
        parts = _docx_blocks(document)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DocumentError("damaged", f"damaged DOCX ({_short(exc)})") from None
    return [PageText(None, "\n".join(parts))]


def _docx_blocks(container) -> list[str]:
    """Paragraphs and tables in document order; a table row is one line "a | b | c"."""
    from docx.table import Table

    lines: list[str] = []
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells, seen = [], set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell is listed once per grid column
                        continue
                    seen.add(id(cell._tc))
                    cells.append(" ".join(line.strip() for line in _docx_blocks(cell) if line.strip()))
                lines.append(" | ".join(cells))
        else:
            lines.append(block.text)
    return lines


# ---------------------------------------------------------------- EPUB

_CHAPTER_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_CHAPTER_SUFFIXES = (".xhtml", ".html", ".htm")


def load_epub(path: Path, limits: Limits) -> list[PageText]:
    """One page per document of the book's reading order (its spine): chapter N is page N.

    The archive passes the same checks as a DOCX before anything is inflated; package files
    are parsed without DTDs or entity expansion; a reference that leaves the book is refused.
    """
    check_zip(path, limits)
    try:
        with zipfile.ZipFile(path) as archive:
            return _epub_pages(archive, limits)
    except (DocumentError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile and lxml raise many kinds on damaged input
        raise DocumentError("damaged", f"damaged EPUB ({_short(exc)})") from None


def _epub_pages(archive: zipfile.ZipFile, limits: Limits) -> list[PageText]:
    import posixpath

    names = set(archive.namelist())
    package_path = _epub_package_path(archive, names)
    package = _safe_xml(archive.read(package_path), "its package file")
    base = posixpath.dirname(package_path)
    manifest = {
        item.get("id"): (item.get("href") or "", (item.get("media-type") or "").lower())
        for item in package.iter("{*}item")
    }
    spine = [ref.get("idref") for ref in package.iter("{*}itemref")]
    if not spine:
        raise DocumentError("damaged", "damaged EPUB (its reading order lists no chapters)")
    if len(spine) > limits.max_pages:
        raise DocumentError("too_large", f"too many chapters ({len(spine):,} > {limits.max_pages:,})")
    encrypted = _epub_encrypted(archive, names)
    pages: list[PageText] = []
    for number, idref in enumerate(spine, start=1):
        text = ""
        href, media_type = manifest.get(idref, ("", ""))
        if href and (media_type in _CHAPTER_TYPES or href.lower().endswith(_CHAPTER_SUFFIXES)):
            member = _epub_member(base, href)
            if member in encrypted:
                raise DocumentError("encrypted", "DRM-protected EPUB: its chapters are encrypted")
            if member in names:
                text = xhtml_to_text(archive.read(member))
        pages.append(PageText(number, text))
    return pages


def _epub_package_path(archive: zipfile.ZipFile, names: set[str]) -> str:
    """The package (OPF) file named by META-INF/container.xml, or the only one there is."""
    import posixpath

    if "META-INF/container.xml" in names:
        container = _safe_xml(archive.read("META-INF/container.xml"), "META-INF/container.xml")
        for rootfile in container.iter("{*}rootfile"):
            full_path = rootfile.get("full-path") or ""
            media_type = rootfile.get("media-type") or "application/oebps-package+xml"
            if full_path and media_type == "application/oebps-package+xml":
                member = _epub_member("", full_path)
                if member in names:
                    return member
                raise DocumentError("damaged", f"damaged EPUB (its package file {posixpath.basename(member)} "
                                               "is missing)")
    candidates = sorted(n for n in names if n.lower().endswith(".opf"))
    if len(candidates) == 1:
        return candidates[0]
    raise DocumentError("damaged", "damaged EPUB (no package file: META-INF/container.xml is missing "
                                   "or names none)")


def _epub_member(base: str, href: str) -> str:
    """The archive name an href points at; refused when it leaves the book (../, /, a URL)."""
    import posixpath
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(href)
    target = posixpath.normpath(posixpath.join(base, unquote(parts.path)))
    if parts.scheme or parts.netloc or target.startswith(("/", "../")) or target == "..":
        raise DocumentError("damaged", f"damaged EPUB (a chapter points outside the book: {href[:80]})")
    return target


def _epub_encrypted(archive: zipfile.ZipFile, names: set[str]) -> set[str]:
    """Archive names listed as encrypted (DRM; font obfuscation lists only fonts)."""
    from urllib.parse import unquote

    if "META-INF/encryption.xml" not in names:
        return set()
    encryption = _safe_xml(archive.read("META-INF/encryption.xml"), "META-INF/encryption.xml")
    return {unquote(ref.get("URI") or "").lstrip("/") for ref in encryption.iter("{*}CipherReference")}


def _safe_xml(data: bytes, what: str):
    """Parse package XML with no DTD, no network and no entity expansion (billion laughs)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True,
                             remove_comments=True, remove_pis=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DocumentError("damaged", f"damaged EPUB ({what} is not valid XML: {_short(exc)})") from None
    if root is None:
        raise DocumentError("damaged", f"damaged EPUB ({what} is empty)")
    return root


_LOADERS: dict[str, Callable[[Path, Limits], list[PageText]]] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".epub": load_epub,
    **{s: load_text for s in TEXT_SUFFIXES},
    **{s: load_html for s in HTML_SUFFIXES},
}
