"""Measure Sprig's OCR: pages per second and character accuracy on pages whose true text is known.

Pages of text PDFs (FinanceBench filings by default) are drawn as a scanner would make them
(grayscale at --scan-dpi, JPEG-compressed, one image per page), saved as an image-only PDF,
and read back through Sprig's own loader (render + OCR, as indexing does). Each page's OCR
text is compared with what pypdf extracts from the original page:

- character accuracy = 1 - CER, CER = Levenshtein distance / length of the true text, both
  with every run of whitespace folded to one space;
- word recall = share of the true words (as a multiset) found in the OCR text, which does
  not depend on reading order (table cells, columns).

    .venv/bin/python tools/ocr_accuracy.py --pages 15 --json ocr.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PDFS = ["3M_2018_10K.pdf", "NIKE_2021_10K.pdf", "PEPSICO_2022_10K.pdf"]
EVAL = Path(os.environ.get("EVALDATA", ROOT.parent / "shared" / "eval"))


def levenshtein(a: str, b: str) -> int:
    """Edit distance, one row at a time with numpy (insertions as a running minimum)."""
    import numpy as np

    if not a:
        return len(b)
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    index = np.arange(len(b) + 1)
    row = index.copy()
    aa = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    for i in range(1, len(aa) + 1):
        cost = (bb != aa[i - 1]).astype(np.int64)
        tmp = np.empty(len(b) + 1, dtype=np.int64)
        tmp[0] = i
        tmp[1:] = np.minimum(row[1:] + 1, row[:-1] + cost)
        row = np.minimum.accumulate(tmp - index) + index
    return int(row[-1])


def fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def words(text: str) -> Counter:
    return Counter(re.findall(r"[A-Za-z0-9$%.,()'-]+", text))


def scanned_copy(source: Path, numbers: list[int], dpi: int, out: Path) -> None:
    """An image-only PDF of the given pages (1-based), each a JPEG like a scanner's."""
    import pypdfium2 as pdfium
    from PIL import Image

    document = pdfium.PdfDocument(str(source))
    images = []
    for number in numbers:
        page = document[number - 1]
        image = page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        images.append(Image.open(io.BytesIO(buffer.getvalue())))
        page.close()
    document.close()
    images[0].save(out, save_all=True, append_images=images[1:], resolution=dpi)


def text_pages(source: Path, count: int, skip: int, min_chars: int = 800) -> list[tuple[int, str]]:
    """The first ``count`` pages after ``skip`` with at least ``min_chars`` of text."""
    from pypdf import PdfReader

    reader = PdfReader(str(source))
    found = []
    for number in range(skip + 1, len(reader.pages) + 1):
        text = reader.pages[number - 1].extract_text() or ""
        if len(fold(text)) >= min_chars:
            found.append((number, text))
            if len(found) == count:
                break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdfs", nargs="*", default=DEFAULT_PDFS, help="FinanceBench file names or paths")
    parser.add_argument("--pages", type=int, default=15, help="pages in all, spread over the PDFs")
    parser.add_argument("--skip", type=int, default=4, help="pages skipped at the start of each PDF (covers)")
    parser.add_argument("--scan-dpi", type=int, default=300, help="resolution of the simulated scan")
    parser.add_argument("--ocr-dpi", type=int, default=None, help="Sprig's render resolution (default: its own)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    from desktop.rag import ocr
    from desktop.rag.loaders import Limits, load_document

    if args.ocr_dpi:
        ocr.OCR_DPI = args.ocr_dpi
    sources = [Path(p) if os.sep in p else EVAL / "financebench" / "pdfs" / p for p in args.pdfs]
    per_pdf = -(-args.pages // len(sources))
    started = time.perf_counter()
    ocr.engine()  # load the models once, outside the timing
    load_s = time.perf_counter() - started
    rows = []
    total_pages = 0
    total_s = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for source in sources:
            pages = text_pages(source, min(per_pdf, args.pages - total_pages), args.skip)
            if not pages:
                continue
            scan = Path(folder) / f"{source.stem}-scan.pdf"
            scanned_copy(source, [n for n, _ in pages], args.scan_dpi, scan)
            cpu = time.process_time()
            t0 = time.perf_counter()
            read = load_document(scan, Limits())
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu
            total_pages += len(pages)
            total_s += seconds
            for (number, truth), page in zip(pages, read, strict=True):
                truth_f, got_f = fold(truth), fold(page.text)
                distance = levenshtein(got_f, truth_f)
                true_words = words(truth_f)
                found = sum((words(got_f) & true_words).values())
                rows.append({"pdf": source.name, "page": number, "chars": len(truth_f),
                             "cer": distance / max(1, len(truth_f)),
                             "word_recall": found / max(1, sum(true_words.values()))})
            print(f"{source.name}: {len(pages)} pages in {seconds:.1f} s ({cpu:.1f} s CPU)", flush=True)
    chars = sum(r["chars"] for r in rows)
    cer = sum(r["cer"] * r["chars"] for r in rows) / max(1, chars)
    recall = sum(r["word_recall"] * r["chars"] for r in rows) / max(1, chars)
    summary = {
        "pages": total_pages, "seconds": round(total_s, 1), "pages_per_s": round(total_pages / total_s, 3),
        "model_load_s": round(load_s, 1), "char_accuracy": round(1 - cer, 4), "word_recall": round(recall, 4),
        "scan_dpi": args.scan_dpi, "ocr_dpi": ocr.OCR_DPI, "threads": ocr._threads(),
        "cpus": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()], "per_page": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "per_page"}, indent=1))
    for r in rows:
        print(f"  {r['pdf']} p{r['page']}: {r['chars']} chars, accuracy {1 - r['cer']:.3f}, "
              f"word recall {r['word_recall']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
