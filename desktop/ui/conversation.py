"""Chats and answers, without widgets: the controller the chat view and the chat list observe.

Every message is saved the moment it exists: the question when it is sent, the answer
while it streams (every ``SAVE_EVERY_S``, one second) and when it completes or is stopped. A question
asked while the model is still loading waits here and starts when the model is ready.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, Signal

from desktop.chats import AnswerRecord, ChatStore, Conversation, Message, title_from
from desktop.ui.engine import EngineController
from desktop.ui.errors import user_message
from desktop.ui.workers import Worker

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New chat"
SAVE_EVERY_S = 1.0  # a streaming answer is saved this often, so a crash loses little


@dataclass
class PendingAnswer:
    key: int
    conversation_id: int
    question: str
    history: list[dict]
    collection: str
    pieces: list[str] = field(default_factory=list)
    stream: object | None = None
    worker: Worker | None = None
    message: Message | None = None  # the saved (partial, then final) answer
    stop_requested: bool = False
    pieces_after_stop: int = 0
    last_saved: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class ChatController(QObject):
    conversations_changed = Signal()  # the list (titles, order) changed
    conversation_opened = Signal(object)  # Conversation, with its messages
    message_added = Signal(object)  # a user Message just saved
    # answers are told apart by a key, so a stopped answer that finishes late updates its own bubble
    answer_started = Signal(int)  # key: an answer bubble should appear
    answer_status = Signal(int, str)  # key, "Waiting for the model…" / "Searching your documents…" / ""
    answer_text = Signal(int, str)  # key, the answer so far (raw, streaming)
    answer_finished = Signal(int, object)  # key, the saved assistant Message
    busy_changed = Signal(bool)

    def __init__(self, chats: ChatStore, engine: EngineController, settings, parent: QObject | None = None):
        super().__init__(parent)
        self.chats = chats
        self.engine = engine
        self.settings = settings
        self.current: Conversation | None = None
        self.pending: PendingAnswer | None = None
        self._finishing: list[PendingAnswer] = []  # stopped answers whose worker is still winding down
        self._keys = 0
        self._watching_engine = False
        self._closed = False
        engine.ready.connect(self._on_engine_ready)
        engine.failed.connect(self._on_engine_failed)

    # ------------------------------------------------------------ conversations
    def conversations(self) -> list[Conversation]:
        return self.chats.list()

    def open(self, conversation_id: int) -> Conversation | None:
        conv = self.chats.load(conversation_id)
        if conv is None:
            return None
        self.current = conv
        self.conversation_opened.emit(conv)
        return conv

    def new_chat(self, collection: str) -> Conversation:
        if self.current is not None and not self.current.messages and self.current.title == DEFAULT_TITLE:
            if self.current.collection != collection:  # reuse the empty chat we are in
                self.chats.set_collection(self.current.id, collection)
                self.current.collection = collection
            self.conversation_opened.emit(self.current)
            return self.current
        conv = self.chats.create(DEFAULT_TITLE, collection)
        self.current = conv
        self.conversations_changed.emit()
        self.conversation_opened.emit(conv)
        return conv

    def rename(self, conversation_id: int, title: str) -> None:
        self.chats.rename(conversation_id, title)
        if self.current is not None and self.current.id == conversation_id:
            self.current.title = title.strip() or "Untitled"
        self.conversations_changed.emit()

    def delete(self, conversation_id: int) -> None:
        if self.pending is not None and self.pending.conversation_id == conversation_id:
            self.stop()
        self.chats.delete(conversation_id)
        if self.current is not None and self.current.id == conversation_id:
            self.current = None
            remaining = self.chats.list()
            if remaining:
                self.open(remaining[0].id)
            else:
                self.conversation_opened.emit(None)
        self.conversations_changed.emit()

    # ------------------------------------------------------------ asking
    @property
    def busy(self) -> bool:
        return self.pending is not None

    def ask(self, question: str, collection: str) -> bool:
        question = question.strip()
        if not question or self.pending is not None:
            return False
        if self.current is None:
            self.current = self.chats.create(title_from(question), collection)
        elif self.current.title == DEFAULT_TITLE and not self.current.messages:
            self.chats.rename(self.current.id, title_from(question))
            self.current.title = title_from(question)
        if self.current.collection != collection:
            self.chats.set_collection(self.current.id, collection)
            self.current.collection = collection
        history = self.current.history()
        message = self.chats.add_message(self.current.id, Message("user", question))  # saved as sent
        self.current.messages.append(message)
        self.message_added.emit(message)
        self.conversations_changed.emit()
        self._keys += 1
        self.pending = PendingAnswer(self._keys, self.current.id, question, history, collection)
        self.busy_changed.emit(True)
        self.answer_started.emit(self.pending.key)
        if self.engine.engine is not None:
            self._generate()
        else:
            self._wait_for_engine()
        return True

    def _wait_for_engine(self) -> None:
        if not self._watching_engine:
            self.engine.state_changed.connect(self._on_engine_state)
            self._watching_engine = True
        self.engine.load()
        self.answer_status.emit(self.pending.key, f"Waiting for the model — {self.engine.message}")

    def _on_engine_state(self, state: str, message: str) -> None:
        if self.pending is not None and self.pending.worker is None and state in ("loading", "assembling"):
            self.answer_status.emit(self.pending.key, f"Waiting for the model — {message}")

    def _on_engine_ready(self, _engine) -> None:
        self._disconnect_state()
        if (self.pending is not None and self.pending.worker is None and not self.pending.stop_requested
                and self.engine.engine is not None):
            self._generate()

    def _on_engine_failed(self, message: str) -> None:
        self._disconnect_state()
        if self.pending is not None and self.pending.worker is None:
            self._finish_with_error(f"The model could not be loaded: {message}")

    def _disconnect_state(self) -> None:
        if self._watching_engine:
            self._watching_engine = False
            self.engine.state_changed.disconnect(self._on_engine_state)

    def _generate(self) -> None:
        pending = self.pending
        assert pending is not None
        if any(p.worker is not None and p.worker.is_running for p in self._finishing):
            # a stopped answer still holds the model for a moment; start when it lets go
            self.answer_status.emit(pending.key, "Waiting for the previous answer to stop…")
            return
        engine = self.engine.engine
        self.answer_status.emit(pending.key, "Searching your documents…")
        stream = engine.ask(pending.question, history=pending.history, collection=pending.collection,
                            general_knowledge=bool(self.settings.allow_general_knowledge))
        pending.stream = stream
        worker = Worker(_drain, stream, name="answer")
        worker.on_quit(stream.stop)
        worker.connect(
            yielded=lambda piece, p=pending: self._on_piece(p, piece),
            returned=lambda answer, p=pending: self._on_answer(p, answer),
            errored=lambda exc, p=pending: self._on_error(p, exc),
            aborted=lambda p=pending: self._on_answer(p, getattr(p.stream, "result", None)),
            finished=lambda p=pending: self._on_worker_finished(p),
        )
        pending.worker = worker
        worker.start()

    def _on_piece(self, pending: PendingAnswer, piece: str) -> None:
        if pending.stop_requested:
            pending.pieces_after_stop += 1
            return
        if not pending.pieces:
            self.answer_status.emit(pending.key, "")
        pending.pieces.append(piece)
        self.answer_text.emit(pending.key, pending.text)
        now = time.monotonic()
        first_words = pending.message is None and pending.text.strip()
        if first_words or (pending.message is not None and now - pending.last_saved >= SAVE_EVERY_S):
            pending.last_saved = now
            self._save(pending, pending.text, AnswerRecord(partial=True, collection=pending.collection))

    def _save(self, pending: PendingAnswer, text: str, record: AnswerRecord) -> Message:
        if self._closed:
            return pending.message or Message.answer(text, record)
        try:
            if pending.message is None:
                pending.message = self.chats.add_message(pending.conversation_id, Message.answer(text, record))
            else:
                pending.message.content, pending.message.meta = text, record.as_json()
                self.chats.update_message(pending.message)
        except Exception:  # noqa: BLE001 - e.g. the chat was deleted meanwhile
            log.exception("saving the answer failed")
            if pending.message is None:
                pending.message = Message.answer(text, record)
        return pending.message

    def stop(self) -> None:
        """End the running answer now: the view shows it stopped at once; the model halts
        before its next token (a prompt being read cannot be interrupted, so the worker may
        finish a moment later)."""
        pending = self.pending
        if pending is None:
            return
        pending.stop_requested = True
        if pending.stream is not None:
            pending.stream.stop()
        if pending.worker is None:  # still waiting for the model: nothing to stop
            self._disconnect_state()
            self._complete(pending, pending.text, AnswerRecord(stopped=True, collection=pending.collection))
            return
        self.pending = None
        self._finishing.append(pending)
        provisional = Message.answer(pending.text, AnswerRecord(stopped=True, partial=True,
                                                                collection=pending.collection))
        self.answer_finished.emit(pending.key, provisional)
        self.busy_changed.emit(False)

    def _on_answer(self, pending: PendingAnswer, answer) -> None:
        if answer is None:
            self._complete(pending, pending.text, AnswerRecord(stopped=True, collection=pending.collection))
            return
        model_name = getattr(getattr(self.engine.engine, "model", None), "name", "")
        record = AnswerRecord.from_answer(answer, pending.collection, model_name)
        if pending.stop_requested:
            record = replace(record, stopped=True)
        self._complete(pending, answer.text, record)

    def _on_error(self, pending: PendingAnswer, exc: BaseException) -> None:
        self._complete(pending, pending.text, AnswerRecord(error=user_message(exc), collection=pending.collection))

    def _finish_with_error(self, message: str) -> None:
        pending = self.pending
        if pending is not None:
            self._complete(pending, "", AnswerRecord(error=message, collection=pending.collection))

    def _complete(self, pending: PendingAnswer, text: str, record: AnswerRecord) -> None:
        message = self._save(pending, text, record)
        if self.current is not None and self.current.id == pending.conversation_id:
            if message not in self.current.messages:
                self.current.messages.append(message)
        was_running = self.pending is pending
        if was_running:
            self.pending = None
        # (a stopped answer is shown as stopped already; this refreshes it with the final text)
        self.answer_finished.emit(pending.key, message)
        if was_running:
            self.busy_changed.emit(False)

    def _on_worker_finished(self, pending: PendingAnswer) -> None:
        if pending in self._finishing:
            self._finishing.remove(pending)
        if self.pending is not None and self.pending.worker is None and self.engine.engine is not None \
                and not self._finishing:
            self._generate()

    # ------------------------------------------------------------ closing
    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop the answer (saving what has streamed) and wait for its worker."""
        pending = self.pending
        workers = [p.worker for p in [pending, *self._finishing] if p is not None and p.worker is not None]
        if pending is not None:
            if pending.worker is None:
                self.stop()
            else:
                pending.stop_requested = True
                if pending.stream is not None:
                    pending.stream.stop()
                self._save(pending, pending.text, AnswerRecord(stopped=True, collection=pending.collection))
        ok = all(w.wait(timeout_s) for w in workers)
        self._closed = True
        return ok


def _drain(stream):
    """The answer job: iterate the stream on the worker, hand each piece to the GUI."""
    for piece in stream:
        if stream.stopped:  # generated after Stop (at most the token already being decoded)
            stream.pieces_after_stop += 1
        yield piece
    return stream.result
