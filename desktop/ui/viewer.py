"""The source viewer: a cited passage shown inside the app.

A PDF opens at the cited page in a ``QPdfView`` with the passage highlighted through a
``QPdfSearchModel``. Any other format is read again (in the sandboxed parser process, on a
worker) and shown as plain text, scrolled to the passage, which is marked in the palette's
marker colour (``desktop.ui.theme``) and marked again when the palette changes.
"""

from __future__ import annotations

import os
import re

from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QTextCharFormat, QTextCursor
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
from desktop.ui.theme import Colors, follows_palette_change
from desktop.ui.workers import Worker

MAX_SHOWN_CHARS = 400_000  # larger texts are shown as a window around the passage
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


class SourceViewer(QWidget):
    closed = Signal()
    opened = Signal(dict)  # the source now shown (after highlighting)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source: dict | None = None
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
        self.pdf_view = QPdfView()
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
        self._text_cache: dict[tuple[str, int | None, float], str] = {}
        self.highlight: tuple[int, int] | None = None  # the passage's span in the text view

    # ------------------------------------------------------------ opening
    def open_source(self, source: dict) -> None:
        self.source = source
        path = source.get("path", "")
        page = source.get("page")
        name = display_name(path)
        self.title.setText(f"{name}, page {page}" if page else name)
        self.title.setToolTip(path)
        self.note.hide()
        self.highlight = None
        self.show()
        if not os.path.isfile(path):
            self._show_message(f"The file is no longer at {path}.")
            return
        if path.lower().endswith(".pdf"):
            self._open_pdf(path, int(page or 1), source.get("text", ""), int(source.get("char_start") or 0))
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
        navigator = self.pdf_view.pageNavigator()
        navigator.jump(target, QPointF(0, 0), navigator.currentZoom())
        page_text = normalise(self.pdf.getAllText(target).text())
        for phrase in search_phrases(passage):
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
    def _open_text(self, path: str, page: int | None, source: dict) -> None:
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

    def _text_read(self, key, text: str, source: dict) -> None:
        self._text_cache[key] = text
        if self.source is source:
            self._show_text(text, source)

    def _text_failed(self, exc: BaseException, source: dict) -> None:
        from desktop.ui.errors import user_message

        if self.source is source:
            self._show_message(f"Cannot show {display_name(source.get('path', ''))}: {user_message(exc)}")

    def _show_text(self, text: str, source: dict) -> None:
        passage = source.get("text", "")
        span = locate(text, passage, int(source.get("char_start") or 0), int(source.get("char_end") or 0))
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
