"""A citation of a scanned (OCR'd) page opens the viewer at that page with the passage's
lines marked over the page image."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from desktop.rag.types import Source
from tests.helpers.scans import PAGES, scan_pdf


def pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * height)
    return data.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3).copy()


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_a_scanned_page_opens_with_the_cited_lines_marked_on_the_page_image(qtbot, make_window, library, tmp_path):
    pdf = scan_pdf(tmp_path / "harbour-scan.pdf")
    assert library.index([pdf]).indexed == [str(pdf)]
    [hit] = library.search("How many nests does the pelican colony on Gull Rock have?", k=1)
    assert hit.page == 3 and "86 nests" in hit.text
    window = make_window(library=library)
    window.resize(1200, 900)
    window.open_source(Source.from_passage(hit, 1))
    viewer = window.viewer
    view = viewer.pdf_view
    qtbot.waitUntil(lambda: view.marks is not None, timeout=20_000)
    assert viewer.stack.currentWidget() is view and viewer.current_page == 2
    assert viewer.title.text() == f"{pdf.name}, page 3"
    page, rects = view.marks
    assert page == 2 and len(rects) == 2  # the passage is the page's two lines
    assert not viewer.note.isVisible()

    # the page image is drawn (dark ink) and the marked lines are in sight
    qtbot.waitUntil(lambda: (pixels(view.viewport()).min(axis=2) < 80).sum() > 200, timeout=20_000)
    marked = pixels(view.viewport())
    saved = view.marks
    view.set_marks(None)
    plain = pixels(view.viewport())
    view.marks = saved
    changed = np.abs(marked.astype(int) - plain.astype(int)).sum(axis=2) > 30
    assert changed.sum() > 500, "nothing was marked"
    mx0, my0, mx1, my1 = bbox(changed)
    # the ink of the page's lines lies inside the marked area: the marks sit on the text
    ink = plain.min(axis=2) < 80
    ix0, iy0, ix1, iy1 = bbox(ink)
    assert mx0 - 3 <= ix0 and ix1 <= mx1 + 3 and my0 - 3 <= iy0 and iy1 <= my1 + 3, (
        (mx0, my0, mx1, my1), (ix0, iy0, ix1, iy1))
    # and the marks hug it (the two lines' boxes plus a small margin, not the whole page)
    assert (mx1 - mx0) < (ix1 - ix0) + 40 and (my1 - my0) < (iy1 - iy0) + 40
    # the marker is the palette's: over white paper the mark shows the marker colour
    paper = marked[changed & ~ink]
    from desktop.ui.theme import Colors

    marker = Colors.from_palette(viewer.palette()).marker
    expected = np.array([marker.red(), marker.green(), marker.blue()])
    assert np.abs(np.median(paper, axis=0) - expected).max() <= 12
    assert " ".join(PAGES[2]).startswith(hit.text.split("\n")[0])
