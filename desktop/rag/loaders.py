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
from pathlib import Path

from desktop.errors import DocumentError
from desktop.rag.types import PageText

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".log", ".csv", ".tsv"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 200 * 1024 * 1024
    max_text_file_bytes: int = 50 * 1024 * 1024
    max_pages: int = 5000
    max_chars: int = 20_000_000
    # DOCX (zip) archives
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: float = 100.0
    max_zip_members: int = 1000


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


def load_document(path: Path, limits: Limits | None = None) -> list[PageText]:
    """Pages of ``path`` with their text; never empty (raises DocumentError instead)."""
    limits = limits or Limits()
    path = Path(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise DocumentError("unsupported", f"unsupported file type '{suffix or path.name}'")
    check_size(path, limits)
    pages = loader(path, limits)
    pages = [PageText(p.number, clean_text(p.text)) for p in pages]
    total = sum(len(p.text) for p in pages)
    if total > limits.max_chars:
        raise DocumentError("too_large", f"too much text ({total:,} characters > {limits.max_chars:,})")
    if not any(p.text.strip() for p in pages):
        if suffix == ".pdf":
            raise DocumentError(
                "no_text", "no text layer: this looks like a scanned PDF (run OCR on it first)"
            )
        raise DocumentError("no_text", "the file contains no text")
    return pages


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")


def clean_text(text: str) -> str:
    """Drop NULs and control characters, fold runs of spaces; keep line structure."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    return text


# ---------------------------------------------------------------- PDF


def load_pdf(path: Path, limits: Limits) -> list[PageText]:
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
    failures = 0
    for number in range(1, count + 1):
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - one bad page must not lose the others
            failures += 1
            text = ""
        pages.append(PageText(number, text))
    if failures == count:
        raise DocumentError("damaged", "damaged PDF (no page could be read)")
    if failures and not any(p.text.strip() for p in pages):
        # pages that raise (deeply nested arrays, broken streams) are damage, not a missing text layer
        raise DocumentError("damaged", f"damaged PDF ({failures} of {count} pages could not be read, "
                                       "the others hold no text)")
    return pages


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


def load_html(path: Path, limits: Limits) -> list[PageText]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    text = soup.get_text("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return [PageText(None, text.strip())]


# ---------------------------------------------------------------- DOCX


def check_zip(path: Path, limits: Limits) -> None:
    """Reject zip bombs from the central directory alone, before anything is inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError("damaged", f"damaged DOCX (not a valid archive: {_short(exc)})") from None
    if len(members) > limits.max_zip_members:
        raise DocumentError("zip_bomb", f"archive has too many parts ({len(members):,})")
    total = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members) or 1
    if total > limits.max_unzipped_bytes or total / packed > limits.max_zip_ratio:
        raise DocumentError(
            "zip_bomb",
            f"archive expands too much ({_mb(total)} from {_mb(packed)}, ratio {total / packed:.0f}:1)",
        )
    _check_declared_sizes(path, members)


def _check_declared_sizes(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Headers can lie: inflate each XML part, stopping one byte past its declared size.

    Memory stays at one block; a part that inflates beyond what the central directory
    declares is a bomb in disguise.
    """
    import zlib

    with open(path, "rb") as handle:
        for member in members:
            if member.compress_type != zipfile.ZIP_DEFLATED:
                continue
            if not member.filename.endswith((".xml", ".rels")):
                continue
            handle.seek(member.header_offset)
            local = handle.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise DocumentError("damaged", "damaged DOCX (broken archive entry)")
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
                raise DocumentError("damaged", f"damaged DOCX (cannot inflate {member.filename})") from None
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
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DocumentError("damaged", f"damaged DOCX ({_short(exc)})") from None
    parts: list[str] = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [PageText(None, "\n".join(parts))]


_LOADERS: dict[str, Callable[[Path, Limits], list[PageText]]] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    **{s: load_text for s in TEXT_SUFFIXES},
    **{s: load_html for s in HTML_SUFFIXES},
}
