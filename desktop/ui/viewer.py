"""The source viewer: a cited passage shown inside the app.

A PDF opens at the cited page in a ``QPdfView`` with the passage highlighted through a
``QPdfSearchModel``. A scanned page (no text layer: indexing read it with OCR) has nothing to
search, so the passage's lines are marked from the boxes OCR kept for them
(``desktop.rag.ocr``), drawn over the page image. Any other format is read again (in the sandboxed parser process, on a
worker) and shown as plain text, scrolled to the passage, which is marked in the palette's
marker colour (``desktop.ui.theme``) and marked again when the palette changes.
"""

from __future__ import annotations

import os
import re

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QTextCharFormat, QTextCursor
from PySide6.QtPdf import QPdfDocument, QPdfSearchModel
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QStackedWidget,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.display import display_name
from desktop.rag.loaders import PLAIN_SIGNS
from desktop.rag.shared import REMOTE_PREFIX
from desktop.rag.types import Source
from desktop.ui.theme import Colors, follows_palette_change
from desktop.ui.workers import Worker

MAX_SHOWN_CHARS = 400_000  # larger texts are shown as a window around the passage
SCANNED_PAGE_CHARS = 32  # a page whose text layer holds fewer characters was read by OCR
_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _WS.sub(" ", text).strip()


def search_phrases(passage: str) -> list[str]:
    """Phrases to look for in the PDF, longest first: the whole passage, then pieces of it."""
    words = normalise(passage).split(" ")
    phrases = [" ".join(words)]
    for n in (40, 20, 10, 6):
        if len(words) > n:
            phrases.append(" ".join(words[:n]))
            phrases.append(" ".join(words[len(words) // 2 : len(words) // 2 + n]))
    seen, out = set(), []
    for phrase in phrases:
        if phrase and phrase not in seen and len(phrase) >= 12:
            seen.add(phrase)
            out.append(phrase)
    return out or [normalise(passage)]


def as_printed(phrase: str, page_text: str) -> str:
    """``phrase`` spelled as the PDF's own text has it: indexing spells a minus sign or a small
    tilde plainly (``clean_text``), the PDF search needs the character printed."""
    if phrase in page_text:
        return phrase
    at = page_text.translate(PLAIN_SIGNS).find(phrase)
    return page_text[at:at + len(phrase)] if at >= 0 else phrase


def locate(text: str, passage: str, start: int, end: int) -> tuple[int, int] | None:
    """Where ``passage`` is in ``text``: at its recorded offsets, or found again if the file moved on."""
    if 0 <= start < end <= len(text) and normalise(text[start:end]) == normalise(passage):
        return start, end
    exact = text.find(passage)
    if exact >= 0:
        return exact, exact + len(passage)
    head = normalise(passage)[:60]
    if len(head) >= 20:
        pattern = r"\s+".join(re.escape(w) for w in head.split(" "))
        match = re.search(pattern, text)
        if match:
            return match.start(), min(len(text), match.start() + len(passage))
    return None


def read_text(path: str, page: int | None):
    """Runs on a worker: the file's text as indexing saw it (parsed in the sandboxed process)."""
    from desktop.rag.parsing import ParserWorker

    with ParserWorker(timeout_s=60.0) as parser:
        pages = parser.parse(path)
    # offsets are within one page's text (a file without pages has exactly one)
    for p in pages:
        if p.number == page:
            return p.text
    return pages[0].text


def ocr_lines(folder: str, path: str, page: int, start: int, end: int) -> list[tuple[float, float, float, float]]:
    """Runs on a worker: the boxes (points, top-left origin) of the OCR'd lines of ``page`` that
    hold the text ``start:end``; empty when indexing kept none for this file's content."""
    from desktop.rag.ocr import page_lines

    found = page_lines(folder, path, page)
    return [line.bbox for line in found.lines_in(start, end)] if found is not None else []


def _qround(value: float) -> int:
    """Qt's qRound: halves away from zero (Python's round() takes halves to even)."""
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


class MarkedPdfView(QPdfView):
    """A QPdfView that also marks rectangles given in page points on one page.

    QPdfView has no call for that and does not say where it puts a page, so the page's place
    is worked out as QPdfView lays pages out (each page scaled to the viewport's width less
    the document margins, pages stacked with ``pageSpacing`` between them).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.marks: tuple[int, list[QRectF]] | None = None  # (0-based page, rectangles in points)
        self.mark_color = QColor(255, 230, 0)

    def set_marks(self, page: int | None, rects: list[QRectF] | None = None) -> None:
        self.marks = (page, list(rects or [])) if page is not None and rects else None
        self.viewport().update()

    def page_geometry(self, page: int) -> QRectF:
        """Where ``page`` (0-based) is in the document's layout, in viewport pixels before scrolling."""
        from PySide6.QtGui import QGuiApplication

        document = self.document()
        margins = self.documentMargins()
        width = self.viewport().width()
        dpi = QGuiApplication.primaryScreen().logicalDotsPerInch() / 72.0
        fit = self.zoomMode() == QPdfView.ZoomMode.FitToWidth
        y = margins.top()
        for number in range(page + 1):
            size = document.pagePointSize(number)
            w, h = _qround(size.width() * dpi), _qround(size.height() * dpi)
            if fit:
                factor = (width - margins.left() - margins.right()) / max(1, w)
            else:
                factor = self.zoomFactor()
            w, h = _qround(w * factor), _qround(h * factor)
            if number < page:
                y += h + self.pageSpacing()
        total = w + margins.left() + margins.right()
        x = (max(total, width) - w) // 2
        return QRectF(x, y, w, h)

    def mark_rects(self) -> list[QRectF]:
        """The marked rectangles in viewport pixels, as painted now."""
        if self.marks is None or self.document() is None:
            return []
        page, rects = self.marks
        if page >= self.document().pageCount():
            return []
        geometry = self.page_geometry(page)
        size = self.document().pagePointSize(page)
        sx = geometry.width() / max(1e-6, size.width())
        sy = geometry.height() / max(1e-6, size.height())
        dx = geometry.x() - self.horizontalScrollBar().value()
        dy = geometry.y() - self.verticalScrollBar().value()
        return [QRectF(dx + r.x() * sx, dy + r.y() * sy, r.width() * sx, r.height() * sy).adjusted(-2, -2, 2, 2)
                for r in rects]

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().paintEvent(event)
        rects = self.mark_rects()
        if not rects:
            return
        painter = QPainter(self.viewport())
        # a highlighter: the marker colour on the paper, the ink stays dark
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Multiply)
        for rect in rects:
            painter.fillRect(rect, self.mark_color)
        painter.end()


class SourceViewer(QWidget):
    closed = Signal()
    opened = Signal(object)  # the Source now shown (after highlighting)

    def __init__(self, parent=None, ocr_dir: str | None = None):
        super().__init__(parent)
        self.source: Source | None = None
        self.ocr_dir = ocr_dir  # where indexing kept OCR'd lines; None: the default data folder's
        self.title = QLabel()
        self.title.setObjectName("panelTitle")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.note.hide()
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Close the source (Ctrl+W)")
        close.clicked.connect(self.close_viewer)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(close)

        self.pdf = QPdfDocument(self)
        self.search = QPdfSearchModel(self)
        self.search.setDocument(self.pdf)
        self.pdf_view = MarkedPdfView()
        self.pdf_view.setDocument(self.pdf)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.pdf_view.setSearchModel(self.search)
        self.search.countChanged.connect(self._select_result)
        self.text_view = QPlainTextEdit()
        self.text_view.setReadOnly(True)
        self.text_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.stack = QStackedWidget()
        for widget in (self.message, self.pdf_view, self.text_view):
            self.stack.addWidget(widget)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(header)
        layout.addWidget(self.note)
        layout.addWidget(self.stack, 1)

        self._pdf_path: str | None = None
        self._target_page = 0
        self._wanted_local = 0
        self._scanned = 0
        self._worker: Worker | None = None
        self._ocr_worker: Worker | None = None
        self._text_cache: dict[tuple[str, int | None, float], str] = {}
        self.highlight: tuple[int, int] | None = None  # the passage's span in the text view

    # ------------------------------------------------------------ opening
    def open_source(self, source: Source) -> None:
        self.source = source
        path, page = source.path, source.page
        name = display_name(path)
        self.title.setText(source.location)
        self.title.setToolTip(path)
        self.note.hide()
        self.highlight = None
        self.show()
        if path.startswith(REMOTE_PREFIX):  # a colleague's document in a shared library
            who = path[len(REMOTE_PREFIX):].split("/", 1)[0]
            self._show_message(f"{name} was added to the shared library by {who}; the file is on their "
                               f"PC. The passage cited:\n\n{source.text}")
            return
        if not os.path.isfile(path):
            self._show_message(f"The file is no longer at {path}.")
            return
        if path.lower().endswith(".pdf"):
            self._open_pdf(path, int(page or 1), source.text, source.char_start)
        else:
            self._open_text(path, page, source)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    # ------------------------------------------------------------ PDF
    @property
    def current_page(self) -> int:
        """0-based page the PDF view shows."""
        return self.pdf_view.pageNavigator().currentPage()

    def _open_pdf(self, path: str, page: int, passage: str, char_start: int) -> None:
        if self._pdf_path != path:
            self.search.setSearchString("")
            error = self.pdf.load(path)
            if error != QPdfDocument.Error.None_:
                self._pdf_path = None
                self._show_message(f"Cannot show {display_name(path)}: the PDF could not be opened ({error.name}).")
                return
            self._pdf_path = path
        self.stack.setCurrentWidget(self.pdf_view)
        target = min(max(0, page - 1), max(0, self.pdf.pageCount() - 1))
        self._target_page = target
        self._scanned = 0
        self.pdf_view.set_marks(None)
        navigator = self.pdf_view.pageNavigator()
        navigator.jump(target, QPointF(0, 0), navigator.currentZoom())
        page_text = normalise(self.pdf.getAllText(target).text())
        if sum(1 for ch in page_text if not ch.isspace()) < SCANNED_PAGE_CHARS:
            self._open_scanned_page(path, target)
            return
        for phrase in search_phrases(passage):
            phrase = as_printed(phrase, page_text)
            self.search.setSearchString(phrase)
            results = self.search.resultsOnPage(target)
            if results:
                # several hits on the page: take the one nearest the passage's recorded offset
                spots = [m.start() for m in re.finditer(re.escape(phrase), page_text)] or [0]
                nearest = min(range(len(spots)), key=lambda i: abs(spots[i] - char_start))
                self._wanted_local = min(nearest, len(results) - 1)
                link = results[self._wanted_local]
                navigator.jump(target, link.location(), navigator.currentZoom())
                self._select_result()
                break
        else:
            self.search.setSearchString("")
            self.note.setText("The passage could not be found on this page (the PDF's text differs); "
                              "showing the page.")
            self.note.show()
        self.opened.emit(self.source)

    def _open_scanned_page(self, path: str, target: int) -> None:
        """A page without a text layer: mark the passage's lines from the boxes OCR kept."""
        self.search.setSearchString("")
        source = self.source
        start = source.char_start
        end = source.char_end or start
        if self._ocr_worker is not None:
            self._ocr_worker.quit()
        worker = Worker(ocr_lines, self._ocr_folder(), path, target + 1, start, end, name="ocr-lines")
        worker.connect(returned=lambda boxes, s=source: self._ocr_lines_read(s, target, boxes),
                       errored=lambda exc, s=source: self._ocr_lines_read(s, target, []))
        self._ocr_worker = worker
        worker.start()

    def _ocr_folder(self) -> str:
        if self.ocr_dir:
            return str(self.ocr_dir)
        from desktop.config import Paths

        return str(Paths.default().ocr)

    def _ocr_lines_read(self, source: Source, target: int, boxes: list) -> None:
        if self.source is not source:
            return  # another source was opened meanwhile
        if not boxes:
            self.note.setText("This page is a scan: the passage's place on it is not known (the file changed "
                              "since it was indexed); showing the page.")
            self.note.show()
        else:
            self.pdf_view.mark_color = Colors.from_palette(self.palette()).marker
            self.pdf_view.set_marks(target, [QRectF(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes])
            navigator = self.pdf_view.pageNavigator()
            first = min(boxes, key=lambda b: b[1])
            navigator.jump(target, QPointF(first[0], max(0.0, first[1] - 24)), navigator.currentZoom())
        self.opened.emit(source)

    def _select_result(self) -> None:
        """Results arrive page by page in the background; select ours once its page is in."""
        count = self.search.count()
        seen_on_page = 0
        for i in range(count):
            link = self.search.resultAtIndex(i)
            if link.page() == self._target_page:
                if seen_on_page == self._wanted_local:
                    if self.pdf_view.currentSearchResultIndex() != i:
                        self.pdf_view.setCurrentSearchResultIndex(i)
                        QTimer.singleShot(0, self._keep_page)
                    return
                seen_on_page += 1
            elif link.page() > self._target_page:
                return

    def _keep_page(self) -> None:
        navigator = self.pdf_view.pageNavigator()
        if navigator.currentPage() != self._target_page:
            navigator.jump(self._target_page, QPointF(0, 0), navigator.currentZoom())

    @property
    def highlighted_result(self):
        index = self.pdf_view.currentSearchResultIndex()
        return self.search.resultAtIndex(index) if index >= 0 else None

    # ------------------------------------------------------------ text
    def _open_text(self, path: str, page: int | None, source: Source) -> None:
        key = (path, page, os.path.getmtime(path))
        if key in self._text_cache:
            self._show_text(self._text_cache[key], source)
            return
        self._show_message(f"Opening {display_name(path)}…")
        if self._worker is not None:
            self._worker.quit()
        worker = Worker(read_text, path, page, name="read-source")
        worker.connect(
            returned=lambda text, k=key, s=source: self._text_read(k, text, s),
            errored=lambda exc, s=source: self._text_failed(exc, s),
        )
        self._worker = worker
        worker.start()

    def _text_read(self, key, text: str, source: Source) -> None:
        self._text_cache[key] = text
        if self.source is source:
            self._show_text(text, source)

    def _text_failed(self, exc: BaseException, source: Source) -> None:
        from desktop.ui.errors import user_message

        if self.source is source:
            self._show_message(f"Cannot show {display_name(source.path)}: {user_message(exc)}")

    def _show_text(self, text: str, source: Source) -> None:
        span = locate(text, source.text, source.char_start, source.char_end)
        offset = 0
        if len(text) > MAX_SHOWN_CHARS:
            centre = span[0] if span else 0
            offset = max(0, centre - MAX_SHOWN_CHARS // 2)
            text = text[offset : offset + MAX_SHOWN_CHARS]
        self.text_view.setPlainText(text)
        self.stack.setCurrentWidget(self.text_view)
        if span is None:
            self.note.setText("This file has changed since it was indexed: the passage is no longer in it.")
            self.note.show()
            self.opened.emit(source)
            return
        start, end = span[0] - offset, span[1] - offset
        self.highlight = (start, end)
        self._mark_passage()
        caret = QTextCursor(self.text_view.document())
        caret.setPosition(start)
        self.text_view.setTextCursor(caret)
        QTimer.singleShot(0, lambda: self._scroll_to(start))
        self.opened.emit(source)

    def _mark_passage(self) -> None:
        """The passage's background in the marker colour of the current palette (its text keeps
        the palette's Text colour, which the marker is fitted to)."""
        if self.highlight is None:
            self.text_view.setExtraSelections([])
            return
        cursor = QTextCursor(self.text_view.document())
        cursor.setPosition(self.highlight[0])
        cursor.setPosition(self.highlight[1], QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        fmt = QTextCharFormat()
        fmt.setBackground(Colors.from_palette(self.palette()).marker)
        selection.format = fmt
        self.text_view.setExtraSelections([selection])

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if follows_palette_change(event) and self.highlight is not None:
            # a theme switch while a source is open: the marker follows the new palette
            self._mark_passage()
        if follows_palette_change(event) and self.pdf_view.marks is not None:
            self.pdf_view.mark_color = Colors.from_palette(self.palette()).marker
            self.pdf_view.viewport().update()

    def _scroll_to(self, position: int) -> None:
        """Put the passage near the top of the view (not at its bottom edge)."""
        bar = self.text_view.verticalScrollBar()
        block = self.text_view.document().findBlock(position)
        bar.setValue(min(bar.maximum(), max(0, block.firstLineNumber() - 2)))

    def highlighted_text(self) -> str:
        if self.highlight is None:
            return ""
        return self.text_view.toPlainText()[self.highlight[0] : self.highlight[1]]

    def close_viewer(self) -> None:
        self.hide()
        self.closed.emit()
