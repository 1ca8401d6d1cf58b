"""Benchmark inputs built at run time from the shared evaluation data (nothing is copied
into the repository).

* ``text_pdfs``: ordinary born-digital text PDFs (Helvetica, compressed content streams,
  ~2,800 characters of real Wikipedia prose a page, files of ~25 pages), written with a
  tiny PDF writer so no extra package is needed. pypdf reads them like any other PDF.
* ``squad_chunks``: the SQuAD 1.1 dev articles cut by Sprig's own chunker.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import textwrap
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("EVALDATA", REPO.parent / "shared" / "eval"))
SQUAD = EVAL / "squad_v1.1_dev" / "derived"

PAGE_CHARS = 2800
LINE_CHARS = 88
PAGE_LINES = 44


def eval_loaders():
    tools = str(EVAL / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import loaders

    return loaders


def squad_articles() -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(str(SQUAD / "articles" / "*.txt")))
    if not files:
        raise SystemExit(f"evaluation data not found in {SQUAD} (set EVALDATA)")
    return files


def squad_qa() -> list[dict]:
    with open(SQUAD / "qa.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _paragraphs():
    while True:  # cycle through the articles for as long as pages are wanted
        for path in squad_articles():
            title = path.stem.split("_", 1)[-1].replace("_", " ")
            yield "# " + title
            for para in path.read_text(encoding="utf-8").split("\n\n"):
                if para.strip():
                    yield para.strip()


def _pages(n_pages: int):
    paragraphs = _paragraphs()
    carry: list[str] = []
    for _ in range(n_pages):
        lines: list[str] = []
        chars = 0
        while chars < PAGE_CHARS and len(lines) < PAGE_LINES:
            if not carry:
                carry = textwrap.wrap(next(paragraphs), LINE_CHARS) + [""]
            line = carry.pop(0)
            lines.append(line)
            chars += len(line) + 1
        yield lines


def _pdf_string(line: str) -> bytes:
    raw = line.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def write_pdf(path: Path, pages: list[list[str]]) -> None:
    """A minimal valid PDF: one Helvetica font, one compressed text stream a page."""
    objects: list[bytes] = []
    n = len(pages)
    page_ids = [4 + 2 * i for i in range(n)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids)
                   + b"] /Count %d >>" % n)
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        body = [b"BT /F1 10 Tf 14 TL 72 740 Td"]
        for line in lines:
            body.append(_pdf_string(line) + b" Tj T*")
        body.append(b"ET")
        stream = zlib.compress(b"\n".join(body))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_ids[i] + 1))
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream
                       + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(out))
    os.replace(tmp, path)


def text_pdfs(folder: Path, n_pages: int, pages_per_file: int = 25) -> list[Path]:
    """``n_pages`` pages of prose in files of ``pages_per_file`` pages (reused if present)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "corpus.json"
    spec = {"pages": n_pages, "per_file": pages_per_file, "page_chars": PAGE_CHARS, "v": 1}
    files = sorted(folder.glob("doc-*.pdf"))
    if stamp.is_file() and json.loads(stamp.read_text()) == spec and files:
        return files
    for old in files:
        old.unlink()
    pages = list(_pages(n_pages))
    files = []
    for k, start in enumerate(range(0, n_pages, pages_per_file)):
        path = folder / f"doc-{k:04d}.pdf"
        write_pdf(path, pages[start : start + pages_per_file])
        files.append(path)
    stamp.write_text(json.dumps(spec))
    return files


def pdf_pages(path: Path) -> int | None:
    """The page count, or None for a file pypdf cannot open here (e.g. AES-encrypted
    filings when the optional 'cryptography' package is missing)."""
    from pypdf import PdfReader

    try:
        return len(PdfReader(str(path)).pages)
    except Exception:  # noqa: BLE001 - any failure means: leave this file out
        return None


def squad_chunks(tokenizer, chunk_tokens: int = 128, overlap: int = 24, limit_articles: int | None = None):
    """[(article file name, char_start, char_end, text)] cut by Sprig's chunker."""
    from desktop.rag.chunking import chunk_pages
    from desktop.rag.types import PageText

    out = []
    for path in squad_articles()[:limit_articles]:
        for c in chunk_pages([PageText(None, path.read_text(encoding="utf-8"))], tokenizer,
                             chunk_tokens, overlap):
            out.append((path.name, c.char_start, c.char_end, c.text))
    return out
