"""The chat: the transcript (Markdown answers with their sources) and the question box.

The view observes a ``ChatController`` and renders what it says; it keeps no state of its
own beyond the bubbles on screen. Streaming text is coalesced and re-rendered at most
every 50 ms, so a fast model cannot flood the GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.chats import AnswerRecord, Conversation, Message
from desktop.display import printable
from desktop.export import answer_notes, answer_text
from desktop.rag.types import Source
from desktop.ui.dnd import local_paths
from desktop.ui.markdown import MarkdownView

RENDER_INTERVAL_MS = 50


def scores_tooltip(source: Source) -> str:
    parts = []
    if source.similarity is not None:
        parts.append(f"similarity {source.similarity:.3f}")
    if source.bm25 is not None:
        parts.append(f"keyword (BM25) {source.bm25:.2f}")
    if source.score is not None:
        parts.append(f"fused rank score {source.score:.4f}")
    lines = ["Retrieval scores: " + (", ".join(parts) if parts else "not recorded"), source.path]
    if source.matched:
        lines.append("The model gave no citation; this source was matched by shared words.")
    return "\n".join(lines)


def display_text(content: str, record: AnswerRecord) -> str:
    """The answer as shown (and as an exported chat has it): when the model named no source but
    one was matched to its words, the citation number is added at the end, so every answer from
    documents links its source; a sentence the evidence does not support is marked as such
    (drawn in the palette's warning colour), never shown as plain fact."""
    return answer_text(content, record)


class SourceItem(QFrame):
    """One source under an answer: [n] file, page, snippet; scores on hover; click to open."""

    clicked = Signal(object)  # the Source

    def __init__(self, source: Source, parent=None):
        super().__init__(parent)
        self.source = source
        self.setObjectName("source")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(scores_tooltip(source))
        n = source.n
        heading = printable(" ".join((source.heading or "").split()))
        if len(heading) > 60:
            heading = heading[:59].rstrip() + "…"
        head = QLabel((f"[{n}] " if n else "") + source.location + (f" · {heading}" if heading else ""))
        head.setTextFormat(Qt.TextFormat.PlainText)
        head.setObjectName("sourceHead")
        snippet = " ".join(source.text.split())
        body = QLabel("“" + (snippet[:220] + "…" if len(snippet) > 220 else snippet) + "”")
        body.setTextFormat(Qt.TextFormat.PlainText)
        body.setWordWrap(True)
        body.setObjectName("sourceSnippet")
        self.head, self.body = head, body
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(1)
        layout.addWidget(head)
        layout.addWidget(body)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.source)
        super().mouseReleaseEvent(event)


class MessageWidget(QFrame):
    """A question or an answer. Answers show status, Markdown text and sources."""

    source_clicked = Signal(object)  # the Source

    def __init__(self, role: str, parent=None):
        super().__init__(parent)
        self.role = role
        self.record = AnswerRecord()
        self.setObjectName("userMessage" if role == "user" else "answerMessage")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.who = QLabel("You" if role == "user" else "Sprig")
        self.who.setObjectName("who")
        self.status = QLabel()
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.hide()
        self.text = MarkdownView()
        self.text.citation_clicked.connect(self._on_citation)
        self.sources_title = QLabel()
        self.sources_title.setObjectName("sourcesTitle")
        self.sources_title.hide()
        self.sources_box = QVBoxLayout()
        self.sources_box.setSpacing(4)
        self.sources: list[SourceItem] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        layout.addWidget(self.who)
        layout.addWidget(self.status)
        layout.addWidget(self.text)
        layout.addWidget(self.sources_title)
        layout.addLayout(self.sources_box)
        self._raw = ""
        self._dirty = False
        self._timer = QTimer(self, interval=RENDER_INTERVAL_MS)
        self._timer.timeout.connect(self._render)

    # ------------------------------------------------------------ streaming
    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def set_streaming_text(self, text: str) -> None:
        self._raw = text
        self._dirty = True
        if not self._timer.isActive():
            self._render()
            self._timer.start()

    def _render(self) -> None:
        if not self._dirty:
            self._timer.stop()
            return
        self._dirty = False
        self.text.set_markdown(self._raw)

    @property
    def plain_text(self) -> str:
        return self.text.toPlainText()

    # ------------------------------------------------------------ final
    def set_message(self, message: Message) -> None:
        self._timer.stop()
        self._dirty = False
        self.record = record = message.record
        if self.role == "user":
            self.text.set_markdown(_escape_user(message.content))
            return
        numbers = {c.n for c in record.citations if c.n}
        content = display_text(message.content, record)
        if record.error:
            content = (content + "\n\n" if content else "") + f"*{record.error}*"
        self.text.set_markdown(content, numbers)
        self.set_status(" ".join(answer_notes(record, with_error=False)))
        self._set_sources(record.citations, record.nearest, record.abstained)

    def _set_sources(self, citations: list[Source], nearest: list[Source], abstained: bool) -> None:
        for item in self.sources:
            item.deleteLater()
        self.sources = []
        shown = citations or (nearest if abstained or not citations else [])
        if not shown:
            self.sources_title.hide()
            return
        self.sources_title.setText("Sources" if citations else "Nearest passages (not enough to answer)")
        self.sources_title.show()
        for source in shown:
            item = SourceItem(source)
            item.clicked.connect(self.source_clicked)
            self.sources_box.addWidget(item)
            self.sources.append(item)

    def _on_citation(self, n: int) -> None:
        for source in self.record.citations:
            if source.n == n:
                self.source_clicked.emit(source)
                return


def _escape_user(text: str) -> str:
    """A question is shown as typed: Markdown characters are escaped, line breaks kept."""
    out = []
    for ch in text:
        out.append("\\" + ch if ch in "\\`*_{}[]()#+-.!<>|~" else ch)
    return "  \n".join("".join(out).split("\n"))


class QuestionEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc stops; dropped files are indexed, not pasted."""

    submitted = Signal()
    escape_pressed = Signal()
    files_dropped = Signal(list)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Escape:  # (the window's Esc shortcut usually gets it first)
            self.escape_pressed.emit()
            event.accept()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submitted.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source) -> bool:  # noqa: N802 - Qt override
        return bool(local_paths(source)) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source) -> None:  # noqa: N802 - Qt override
        paths = local_paths(source)
        if paths:
            self.files_dropped.emit(paths)
            return
        super().insertFromMimeData(source)


class ChatView(QWidget):
    """Transcript, question box, Send and Stop. Emits ``ask``/``stop``; renders the controller."""

    source_clicked = Signal(object)  # the Source
    files_dropped = Signal(list)

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.bubbles: dict[int, MessageWidget] = {}  # answer key -> bubble
        self.messages: list[MessageWidget] = []
        self.collection_provider = lambda: "default"

        self.title = QLabel("New chat")
        self.title.setObjectName("chatTitle")
        self.scope = QLabel()
        self.scope.setObjectName("hint")
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.scope)

        self.transcript = QWidget()
        self.transcript.setObjectName("transcript")
        self.column = QVBoxLayout(self.transcript)
        self.column.setContentsMargins(4, 4, 4, 4)
        self.column.setSpacing(10)
        self.placeholder = QLabel(
            "Ask a question about your documents.\n\nEnter sends · Shift+Enter new line · Esc stops · Ctrl+N new chat"
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setObjectName("hint")
        self.column.addWidget(self.placeholder)
        self.column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.transcript)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.verticalScrollBar().rangeChanged.connect(self._follow)
        self._follow_bottom = True
        self.scroll.verticalScrollBar().valueChanged.connect(self._track_bottom)

        self.input = QuestionEdit()
        self.input.setPlaceholderText("Ask about your documents…  (Enter to send, Shift+Enter for a new line)")
        self.input.setFixedHeight(72)
        self.input.submitted.connect(self.send)
        self.input.files_dropped.connect(self.files_dropped)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.setToolTip("Send the question (Enter)")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the answer (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addLayout(buttons)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(header)
        layout.addWidget(self.scroll, 1)
        layout.addLayout(row)

        controller.conversation_opened.connect(self.show_conversation)
        controller.message_added.connect(self._on_message_added)
        controller.answer_started.connect(self._on_answer_started)
        controller.answer_status.connect(self._on_answer_status)
        controller.answer_text.connect(self._on_answer_text)
        controller.answer_finished.connect(self._on_answer_finished)
        controller.busy_changed.connect(self._on_busy)
        controller.conversations_changed.connect(self._update_title)

    # ------------------------------------------------------------ actions
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.controller.busy:
            return
        if self.controller.ask(text, self.collection_provider()):
            self.input.clear()

    def stop(self) -> None:
        self.controller.stop()

    # ------------------------------------------------------------ rendering
    def clear(self) -> None:
        for widget in self.messages:
            widget.deleteLater()
        self.messages = []
        self.bubbles = {}
        self.placeholder.show()

    def _add(self, widget: MessageWidget) -> MessageWidget:
        self.placeholder.hide()
        widget.source_clicked.connect(self.source_clicked)
        self.column.insertWidget(self.column.count() - 1, widget)
        self.messages.append(widget)
        self._follow_bottom = True
        return widget

    def show_conversation(self, conversation: Conversation | None) -> None:
        self.clear()
        self._update_title()
        if conversation is None:
            return
        for message in conversation.messages:
            self._add(MessageWidget(message.role)).set_message(message)
        pending = self.controller.pending
        if pending is not None and pending.conversation_id == conversation.id:
            bubble = self._add(MessageWidget("assistant"))
            self.bubbles[pending.key] = bubble
            bubble.set_streaming_text(pending.text)

    def _update_title(self) -> None:
        conv = self.controller.current
        self.title.setText(conv.title if conv else "New chat")

    def set_scope(self, collection: str) -> None:
        self.scope.setText(f"Answers from: {collection}")

    def _visible(self, key: int) -> MessageWidget | None:
        return self.bubbles.get(key)

    def _on_message_added(self, message: Message) -> None:
        if self.controller.current is not None:
            self._add(MessageWidget(message.role)).set_message(message)

    def _on_answer_started(self, key: int) -> None:
        bubble = self._add(MessageWidget("assistant"))
        bubble.set_status("Searching your documents…")
        self.bubbles[key] = bubble

    def _on_answer_status(self, key: int, text: str) -> None:
        if (bubble := self._visible(key)) is not None:
            bubble.set_status(text)

    def _on_answer_text(self, key: int, text: str) -> None:
        if (bubble := self._visible(key)) is not None:
            bubble.set_streaming_text(text)

    def _on_answer_finished(self, key: int, message: Message) -> None:
        if (bubble := self._visible(key)) is not None:
            bubble.set_message(message)

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setVisible(busy)
        self.send_button.setVisible(not busy)
        if not busy:
            self.input.setFocus()

    def _track_bottom(self, value: int) -> None:
        bar = self.scroll.verticalScrollBar()
        self._follow_bottom = value >= bar.maximum() - 8

    def _follow(self, _min: int, maximum: int) -> None:
        if self._follow_bottom:
            self.scroll.verticalScrollBar().setValue(maximum)

    def last_answer(self) -> MessageWidget | None:
        answers = [m for m in self.messages if m.role == "assistant"]
        return answers[-1] if answers else None
