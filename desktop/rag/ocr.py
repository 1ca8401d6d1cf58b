"""Offline OCR of scanned PDF pages.

A page with no text layer (or almost none) is rendered with PDFium (``pypdfium2``) and read
by RapidOCR's PP-OCRv6 detection and recognition models on ONNX Runtime. The models come
inside the ``rapidocr`` wheel and are passed to it by path, checked against their sha256:
a missing or damaged model file is refused with a plain message, and any attempt of the
library to fetch a file is refused too, so nothing is ever downloaded.

Each OCR'd page keeps its text lines with their boxes (in PDF points, origin at the top
left of the page as shown, the coordinates Qt's PDF module uses) and their character span
in the page text. With a cache folder the pages are written, one JSON line each, to
``<folder>/<sha256 of the file>.jsonl`` as they are read: a cancelled or interrupted job
resumes where it stopped, and the source viewer finds the boxes there to mark a cited
passage on the page image.

This runs inside the parser worker process (``desktop.rag.parsing``), under its time and
memory limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from desktop.cpu import logical_cores
from desktop.errors import DocumentError

RAPIDOCR_VERSION = "3.10.0"
# model files of the rapidocr wheel and their sha256 (as its default_models.yaml lists them)
MODELS = {
    "det": ("PP-OCRv6_det_small.onnx", "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
    "rec": ("PP-OCRv6_rec_small.onnx", "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"),
    "cls": ("ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}
MODELS_ENV = "SPRIG_OCR_MODELS"  # another folder holding the same three files (tests, packagers)

OCR_DPI = 150  # render resolution; text of 8 pt and up reads well (see the README's figures)
MAX_PAGE_PIXELS = 12_000_000  # a poster-sized page is rendered smaller instead of filling memory
MIN_TEXT_CHARS = 32  # a page with fewer characters in its text layer counts as scanned
MIN_SCORE = 0.5  # lines recognised with less confidence are dropped
CACHE_VERSION = 1
ENGINE_ID = f"rapidocr {RAPIDOCR_VERSION} PP-OCRv6 small, {OCR_DPI} dpi"

ProgressFn = Callable[[int, int], None]  # (pages done, pages to read)


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its box in PDF points (x0, y0, x1, y1; top-left origin, page as
    shown) and its span ``start:end`` in the page text."""

    bbox: tuple[float, float, float, float]
    start: int
    end: int

    def as_list(self) -> list:
        return [*(round(v, 2) for v in self.bbox), self.start, self.end]

    @classmethod
    def from_list(cls, row: list) -> OcrLine:
        x0, y0, x1, y1, start, end = row
        return cls((float(x0), float(y0), float(x1), float(y1)), int(start), int(end))


@dataclass(frozen=True)
class OcrPage:
    number: int  # 1-based
    text: str
    lines: tuple[OcrLine, ...]

    def lines_in(self, start: int, end: int) -> list[OcrLine]:
        """The lines whose text overlaps the span ``start:end`` of the page text."""
        return [line for line in self.lines if line.start < end and line.end > start]


# ---------------------------------------------------------------- the models


def model_dir() -> Path:
    """Where the model files are: $SPRIG_OCR_MODELS, or the models folder of the rapidocr wheel
    (found without importing it)."""
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override).expanduser()
    import importlib.util

    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.origin:
        raise DocumentError("ocr_unavailable", "this PDF has scanned pages and the OCR package (rapidocr) is "
                                               "not installed: reinstall Sprig to read them")
    return Path(spec.origin).parent / "models"


def model_paths(folder: Path | None = None) -> dict[str, Path]:
    """The three model files, each checked against its sha256; refused (never fetched) when
    one is missing or damaged."""
    folder = folder or model_dir()
    paths = {}
    for task, (name, sha256) in MODELS.items():
        path = folder / name
        if not path.is_file():
            raise DocumentError("ocr_unavailable", f"the OCR model file {name} is missing from {folder}: reinstall "
                                                   "Sprig (Sprig never downloads models)")
        if _sha256(str(path), path.stat().st_size, path.stat().st_mtime) != sha256:
            raise DocumentError("ocr_unavailable", f"the OCR model file {name} in {folder} is damaged (its checksum "
                                                   "differs): reinstall Sprig")
        paths[task] = path
    return paths


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _threads() -> int:
    """ONNX Runtime threads: one on a two-core machine (the app embeds and answers on the
    others), up to four on bigger ones."""
    return max(1, min(4, logical_cores() // 2))


class _Refused(DocumentError):
    pass


def _refuse_download(cls, params) -> None:
    raise _Refused("ocr_unavailable", f"the OCR library asked to download {getattr(params, 'file_url', 'a file')}: "
                                      "Sprig never downloads; reinstall Sprig")


def engine(folder: str | os.PathLike | None = None):
    """A RapidOCR reader on the models in ``folder`` (default: the wheel's), checked first."""
    folder = Path(folder) if folder else model_dir()
    model_paths(folder)
    return _engine(str(folder))


@lru_cache(maxsize=2)
def _engine(folder: str):
    """One reader per process and folder: loading the models takes a moment."""
    paths = model_paths(Path(folder))
    from rapidocr import RapidOCR
    from rapidocr.utils import download_file

    # the library fetches a model or a dictionary it cannot find; with explicit paths it has
    # no reason to, and if a future version tried anyway, the attempt fails here
    download_file.DownloadFile.run = classmethod(_refuse_download)
    threads = _threads()
    return RapidOCR(params={
        "Global.log_level": "error",
        "Global.model_root_dir": str(paths["det"].parent),
        "Global.use_cls": True,
        "Det.model_path": str(paths["det"]),
        "Rec.model_path": str(paths["rec"]),
        "Cls.model_path": str(paths["cls"]),
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })


# ---------------------------------------------------------------- pages


def text_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def has_marks(page) -> bool:
    """Whether a PDFium page draws anything OCR could read (an image, or paths: text turned
    into outlines). A blank page is not worth reading."""
    import pypdfium2.raw as pdfium_c

    kinds = [pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_PATH]
    return next(iter(page.get_objects(filter=kinds, max_depth=4)), None) is not None


def render(page, dpi: int | None = None):
    """(grayscale image as a numpy array, pixels per point) of a PDFium page as shown."""
    width, height = page.get_size()
    scale = (dpi or OCR_DPI) / 72.0
    if width * height * scale * scale > MAX_PAGE_PIXELS:
        scale = (MAX_PAGE_PIXELS / max(1.0, width * height)) ** 0.5
    bitmap = page.render(scale=scale, grayscale=True)
    image = bitmap.to_numpy()
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image.copy(), scale


_SPACES = re.compile(r"\s+")


def read_image(image, scale: float, number: int, reader=None) -> OcrPage:
    """OCR one rendered page: its text (a line of text per row of boxes, left to right) and
    the box of every recognised line in points."""
    reader = reader or engine()
    result = reader(image)
    boxes = [] if result.boxes is None else result.boxes
    found = []
    for box, text, score in zip(boxes, result.txts or (), result.scores or (), strict=False):
        text = _SPACES.sub(" ", _clean(text)).strip()
        if not text or score < MIN_SCORE:
            continue
        xs = [float(p[0]) for p in box]
        ys = [float(p[1]) for p in box]
        found.append(((min(xs) / scale, min(ys) / scale, max(xs) / scale, max(ys) / scale), text))
    return layout(found, number)


def _clean(text: str) -> str:
    from desktop.rag.loaders import clean_text

    return clean_text(text)


def layout(found: list[tuple[tuple[float, float, float, float], str]], number: int) -> OcrPage:
    """Page text from boxes: boxes whose heights overlap by half form one row; rows top to
    bottom, boxes in a row left to right, joined by a space."""
    rows: list[list[tuple[tuple[float, float, float, float], str]]] = []
    for item in sorted(found, key=lambda f: (f[0][1] + f[0][3]) / 2):
        (_, top, _, bottom), _ = item
        if rows:
            row_top = min(b[1] for b, _ in rows[-1])
            row_bottom = max(b[3] for b, _ in rows[-1])
            overlap = min(bottom, row_bottom) - max(top, row_top)
            if overlap >= 0.5 * min(bottom - top, row_bottom - row_top):
                rows[-1].append(item)
                continue
        rows.append([item])
    parts: list[str] = []
    lines: list[OcrLine] = []
    position = 0
    for r, row in enumerate(rows):
        if r:
            parts.append("\n")
            position += 1
        for i, (bbox, text) in enumerate(sorted(row, key=lambda f: f[0][0])):
            if i:
                parts.append(" ")
                position += 1
            parts.append(text)
            lines.append(OcrLine(bbox, position, position + len(text)))
            position += len(text)
    return OcrPage(number, "".join(parts), tuple(lines))


# ---------------------------------------------------------------- the cache


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cache_file(folder: str | os.PathLike, digest: str) -> Path:
    return Path(folder) / f"{digest}.jsonl"


def _header() -> dict:
    return {"sprig_ocr": CACHE_VERSION, "engine": ENGINE_ID}


def read_cache(path: Path) -> dict[int, OcrPage]:
    """Pages already read for this file (nothing when the file is missing, damaged, or was
    written by another OCR setup)."""
    pages: dict[int, OcrPage] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            rows = _json_lines(handle)
            if next(rows, None) != _header():
                return {}
            for row in rows:
                try:
                    page = OcrPage(int(row["page"]), str(row["text"]),
                                   tuple(OcrLine.from_list(r) for r in row["lines"]))
                except (KeyError, TypeError, ValueError):
                    continue
                pages[page.number] = page
    except (OSError, UnicodeDecodeError):
        return {}
    return pages


def _json_lines(handle) -> Iterator:
    for raw in handle:
        if not raw.endswith("\n"):
            return  # the last line of an interrupted write
        try:
            yield json.loads(raw)
        except ValueError:
            continue


class _CacheWriter:
    """Appends one JSON line per page, so every page read survives a cancel or a kill."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        self.handle = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if fresh or not path.exists():
                self.handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
                self._write(_header())
            else:
                _drop_partial_line(path)
                self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError:
            self.handle = None  # no cache (a read-only data folder): OCR works all the same

    def _write(self, row: dict) -> None:
        self.handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.handle.flush()

    def add(self, page: OcrPage) -> None:
        if self.handle is None:
            return
        try:
            self._write({"page": page.number, "text": page.text, "lines": [line.as_list() for line in page.lines]})
        except OSError:
            self.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _drop_partial_line(path: Path) -> None:
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def page_lines(folder: str | os.PathLike, path: str | os.PathLike, page: int) -> OcrPage | None:
    """The OCR'd page of a file as indexing read it (for the source viewer), or None."""
    try:
        digest = file_digest(path)
    except OSError:
        return None
    return read_cache(cache_file(folder, digest)).get(page)


# ---------------------------------------------------------------- a document


def _read_page(document, number: int, dpi: int) -> OcrPage:
    page = document[number - 1]
    try:
        image, scale = render(page, dpi)
    finally:
        page.close()
    return read_image(image, scale, number)


def ocr_pdf(path: str | os.PathLike, numbers: list[int], cache_dir: str | None = None,
            progress: ProgressFn | None = None, dpi: int | None = None) -> dict[int, OcrPage]:
    """OCR the pages ``numbers`` (1-based) of a PDF that have something drawn on them.

    Pages found in the cache are not read again. ``progress(done, total)`` is called before
    the first page and after each one. Returns the pages read, by number.
    """
    import pypdfium2 as pdfium

    dpi = dpi or OCR_DPI
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise DocumentError("damaged", f"damaged PDF (its pages cannot be drawn for OCR: {exc})") from None
    try:
        todo = []
        for number in numbers:
            page = document[number - 1]
            try:
                if has_marks(page):
                    todo.append(number)
            finally:
                page.close()
        if not todo:
            return {}
        cached: dict[int, OcrPage] = {}
        writer = None
        if cache_dir:
            cache = cache_file(cache_dir, file_digest(path))
            cached = read_cache(cache)
            writer = _CacheWriter(cache, fresh=not cached)
        out = {n: cached[n] for n in todo if n in cached}
        report = progress or (lambda done, total: None)
        try:
            report(len(out), len(todo))
            errors = []
            for number in todo:
                if number in out:
                    continue
                try:
                    result = _read_page(document, number, dpi)
                except (DocumentError, MemoryError):
                    raise
                except Exception as exc:  # noqa: BLE001 - one page that cannot be drawn or read
                    errors.append(f"page {number}: {type(exc).__name__}")
                    continue
                out[number] = result
                if writer is not None:
                    writer.add(result)
                report(len(out) + len(errors), len(todo))
        finally:
            if writer is not None:
                writer.close()
        if errors and not out:
            raise DocumentError("damaged", f"damaged PDF (its scanned pages could not be read: {errors[0]})")
        return out
    finally:
        document.close()
