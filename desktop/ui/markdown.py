"""Answers rendered as Markdown, safely: answers are untrusted text.

The view is a ``QTextBrowser`` that loads no resource at all (no image, no style sheet, no
file, nothing remote), parses Markdown without raw HTML, and follows no link by itself:
only ``cite:N`` links (the citation numbers) do anything, and the owner decides what.

Citation numbers are drawn as chips and the "not supported" note in the warning colour,
both taken from the palette (``desktop.ui.theme``) and redrawn when the palette changes.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QFont, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser

from desktop.export import UNSUPPORTED_NOTE  # put after an unsupported sentence, drawn as a warning
from desktop.rag.grounding import CITE
from desktop.ui.theme import Colors, follows_palette_change

CITE_SCHEME = "cite"
_CITE = re.compile(CITE.pattern + r"(?!\()")  # a citation marker that is not already a link's text
_FENCE = re.compile(r"(```.*?(?:```|$)|`[^`\n]*`)", re.DOTALL)

MARKDOWN_FEATURES = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value
    | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)


def linkify_citations(text: str, valid: set[int]) -> str:
    """Turn ``[2]`` (and ``[1, 3]``) into Markdown links ``cite:2`` for the numbers in ``valid``.

    Code spans are left alone, and numbers that name no source stay plain text.
    """

    def link(match: re.Match) -> str:
        numbers = [int(part) for part in match.group(1).split(",")]
        if not all(n in valid for n in numbers):
            return match.group(0)
        return "".join(f"[\\[{n}\\]]({CITE_SCHEME}:{n})" for n in numbers)

    parts = _FENCE.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code
        parts[i] = _CITE.sub(link, parts[i])
    return "".join(parts)


def citation_number(url: QUrl) -> int | None:
    if url.scheme() != CITE_SCHEME:
        return None
    try:
        return int(url.path())
    except ValueError:
        return None


class MarkdownView(QTextBrowser):
    """A read-only Markdown block that is exactly as tall as its text (no inner scrolling)."""

    citation_clicked = Signal(int)
    link_hovered = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        )
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.anchorClicked.connect(self._on_anchor)
        self.highlighted.connect(lambda url: self.link_hovered.emit(url.toString()))
        self._markdown = ""

    # Never load anything an answer names: images, style sheets, files, remote URLs.
    def loadResource(self, kind, url):  # noqa: N802 - Qt override
        return None

    def set_markdown(self, text: str, citations: set[int] | None = None) -> None:
        source = linkify_citations(text, citations or set())
        if source == self._markdown:
            return
        self._markdown = source
        self.document().setMarkdown(source, MARKDOWN_FEATURES)
        self._decorate()
        self._fit()

    def _decorate(self) -> None:
        """Citation links as chips, the "not supported" note in the warning colour."""
        if CITE_SCHEME + ":" not in self._markdown and UNSUPPORTED_NOTE not in self._markdown:
            return
        colors = Colors.from_palette()
        doc = self.document()
        chip = QTextCharFormat()
        chip.setForeground(colors.chip_text)
        chip.setBackground(colors.chip)
        chip.setFontUnderline(False)
        chip.setFontWeight(QFont.Weight.DemiBold)
        spans = []  # found first, formatted after: formatting splits and merges fragments
        block = doc.begin()
        while block.isValid():
            for piece in block:
                fragment = piece.fragment()
                if fragment.charFormat().anchorHref().startswith(CITE_SCHEME + ":"):
                    spans.append((fragment.position(), fragment.position() + fragment.length()))
            block = block.next()
        for start, end in spans:
            cursor = QTextCursor(doc)
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            cursor.mergeCharFormat(chip)
        warning = QTextCharFormat()
        warning.setForeground(colors.warning)
        cursor = doc.find(UNSUPPORTED_NOTE)
        while not cursor.isNull():
            cursor.mergeCharFormat(warning)
            cursor = doc.find(UNSUPPORTED_NOTE, cursor)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if follows_palette_change(event) and self._markdown:
            # the chips carry colours of their own: draw them again in the new palette's
            self.document().setMarkdown(self._markdown, MARKDOWN_FEATURES)
            self._decorate()

    def markdown(self) -> str:
        return self._markdown

    def _on_anchor(self, url: QUrl) -> None:
        n = citation_number(url)
        if n is not None:
            self.citation_clicked.emit(n)
        # any other link is ignored: the app never opens what an answer points to

    def _fit(self, *_args) -> None:
        self.document().setTextWidth(self.viewport().width())
        height = int(self.document().size().height()) + 2 * self.frameWidth() + 2
        if height != self.height():
            self.setFixedHeight(max(height, self.fontMetrics().height() + 6))
            self.updateGeometry()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(super().sizeHint().width(), self.height())
