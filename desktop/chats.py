"""Conversations: plain objects the window shows, saved one transaction per message.

Chats live in their own SQLite file (WAL, synchronous=FULL): a message acknowledged to the
user survives a crash or kill -9; a damaged message is skipped, never the whole history.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from desktop.rag.grounding import Claim
from desktop.rag.types import Source
from desktop.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    collection TEXT NOT NULL DEFAULT 'default',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conv ON messages(conversation_id, id);
"""


UNREADABLE = "unreadable_meta"  # the key a message whose meta could not be parsed is loaded with


@dataclass
class AnswerRecord:
    """What an answer message keeps besides its text: how it was made, its sources, whether it
    was stopped, interrupted or failed. A question keeps an empty one.

    Stored as JSON in ``Message.meta``. A finished answer (``mode`` set) writes every field; an
    answer that never finished (streaming, stopped before the model answered, failed) writes
    only what it has, as it always did."""

    mode: str | None = None  # documents | quoted | abstained | general; None: no answer came back
    abstained: bool = False
    stopped: bool = False
    partial: bool = False  # saved while streaming (Sprig closed before it finished)
    error: str | None = None  # why it failed, in the user's words
    collection: str | None = None
    model: str = ""
    citations: list[Source] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    confidence: float | None = None
    nearest: list[Source] = field(default_factory=list)  # shown when it abstained
    timings: dict[str, float] = field(default_factory=dict)
    unreadable: bool = False  # the stored meta was damaged: its sources could not be read

    @classmethod
    def from_answer(cls, answer, collection: str, model_name: str = "") -> AnswerRecord:
        """An answer from the pipeline (the window and ``sprig ask --chat`` alike)."""
        return cls(
            mode=answer.mode,
            abstained=answer.abstained,
            stopped=answer.stopped,
            collection=collection,
            model=model_name,
            citations=[Source.from_passage(c.passage, c.n, c.matched) for c in answer.citations],
            claims=list(answer.claims),
            confidence=answer.confidence,
            nearest=[Source.from_passage(p) for p in answer.nearest],
            timings={k: round(v, 3) for k, v in answer.timings.items()},
        )

    def as_json(self) -> dict:
        if self.mode is not None:
            d = {
                "mode": self.mode,
                "abstained": self.abstained,
                "stopped": self.stopped,
                "collection": self.collection,
                "model": self.model,
                "citations": [s.as_json() for s in self.citations],
                "claims": [c.as_json() for c in self.claims],
                "confidence": self.confidence,
                "nearest": [s.as_json() for s in self.nearest],
                "timings": dict(self.timings),
            }
            if self.partial:
                d["partial"] = True
            if self.error is not None:
                d["error"] = self.error
        else:
            d = {}
            if self.error is not None:
                d["error"] = self.error
            if self.stopped:
                d["stopped"] = True
            if self.partial:
                d["partial"] = True
            if self.collection is not None:
                d["collection"] = self.collection
        if self.unreadable:
            d[UNREADABLE] = True
        return d

    @classmethod
    def from_json(cls, d: dict) -> AnswerRecord:
        """A stored meta: a question's empty one, a row from an older version, a damaged one."""
        if not isinstance(d, dict):
            return cls(unreadable=True)
        error = d.get("error")
        collection = d.get("collection")
        timings = d.get("timings")
        return cls(
            mode=d.get("mode") or None,
            abstained=bool(d.get("abstained")),
            stopped=bool(d.get("stopped")),
            partial=bool(d.get("partial")),
            error=None if error is None else str(error),
            collection=None if collection is None else str(collection),
            model=str(d.get("model") or ""),
            citations=_sources(d.get("citations")),
            claims=[_claim(c) for c in d.get("claims") or [] if isinstance(c, dict)],
            confidence=_number(d.get("confidence")),
            nearest=_sources(d.get("nearest")),
            timings={str(k): v for k, v in timings.items() if isinstance(v, (int, float))}
            if isinstance(timings, dict) else {},
            unreadable=bool(d.get(UNREADABLE)),
        )


def _sources(items) -> list[Source]:
    return [Source.from_json(s) for s in items or [] if isinstance(s, dict)]


def _claim(d: dict) -> Claim:
    numbers = d.get("citations") or []
    return Claim(str(d.get("text") or ""), bool(d.get("supported", True)),
                 tuple(n for n in numbers if isinstance(n, int)) if isinstance(numbers, list) else ())


def _number(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Message:
    role: str  # user | assistant
    content: str
    meta: dict = field(default_factory=dict)  # an AnswerRecord as JSON (empty for a question)
    id: int | None = None
    created: float = 0.0

    @classmethod
    def answer(cls, content: str, record: AnswerRecord) -> Message:
        return cls("assistant", content, record.as_json())

    @property
    def record(self) -> AnswerRecord:
        """The stored meta read back: an answer's sources, mode, notes."""
        return AnswerRecord.from_json(self.meta)

    def as_history(self) -> dict:
        return {"role": self.role, "content": self.content}


@dataclass
class Conversation:
    id: int
    title: str
    collection: str = "default"
    created: float = 0.0
    updated: float = 0.0
    messages: list[Message] = field(default_factory=list)

    def history(self) -> list[dict]:
        return [m.as_history() for m in self.messages if not m.record.abstained]


def title_from(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= 48 else words[:47].rstrip() + "…"


class ChatStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = open_database(self.path, _SCHEMA)
        self.unreadable = 0  # messages skipped because they could not be read

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params=()) -> sqlite3.Cursor:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return cur

    def create(self, title: str = "New chat", collection: str = "default") -> Conversation:
        now = time.time()
        cur = self._write(
            "INSERT INTO conversations(title, collection, created, updated) VALUES (?, ?, ?, ?)",
            (title, collection, now, now),
        )
        return Conversation(int(cur.lastrowid), title, collection, now, now)

    def list(self) -> list[Conversation]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, collection, created, updated FROM conversations ORDER BY updated DESC, id DESC"
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def find(self, title: str) -> Conversation | None:
        """The most recently updated chat with this exact title (surrounding spaces ignored)."""
        title = title.strip()
        return next((c for c in self.list() if c.title.strip() == title), None)

    def message_counts(self) -> dict[int, int]:
        """conversation id -> number of messages saved in it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT conversation_id, COUNT(*) FROM messages GROUP BY conversation_id").fetchall()
        return {cid: n for cid, n in rows}

    def load(self, conversation_id: int) -> Conversation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, collection, created, updated FROM conversations WHERE id=?", (conversation_id,)
            ).fetchone()
            if row is None:
                return None
            rows = self._db.execute(
                "SELECT id, role, content, meta, created FROM messages WHERE conversation_id=? ORDER BY id",
                (conversation_id,),
            ).fetchall()
        conv = Conversation(*row)
        for mid, role, content, meta, created in rows:
            try:
                parsed = json.loads(meta) if meta else {}
            except ValueError:
                parsed = AnswerRecord(unreadable=True).as_json()
                self.unreadable += 1
            conv.messages.append(Message(role, content or "", parsed, mid, created))
        return conv

    def add_message(self, conversation_id: int, message: Message) -> Message:
        """Save one message in its own transaction; returns it with its id (acknowledged)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO messages(conversation_id, role, content, meta, created) VALUES (?, ?, ?, ?, ?)",
                    (conversation_id, message.role, message.content, json.dumps(message.meta), now),
                )
                self._db.execute("UPDATE conversations SET updated=? WHERE id=?", (now, conversation_id))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        message.id = int(cur.lastrowid)
        message.created = now
        return message

    def update_message(self, message: Message) -> None:
        self._write(
            "UPDATE messages SET content=?, meta=? WHERE id=?",
            (message.content, json.dumps(message.meta), message.id),
        )

    def rename(self, conversation_id: int, title: str) -> None:
        self._write("UPDATE conversations SET title=? WHERE id=?", (title.strip() or "Untitled", conversation_id))

    def set_collection(self, conversation_id: int, collection: str) -> None:
        self._write("UPDATE conversations SET collection=? WHERE id=?", (collection, conversation_id))

    def delete(self, conversation_id: int) -> None:
        self._write("DELETE FROM conversations WHERE id=?", (conversation_id,))

    def message_ids(self, conversation_id: int | None = None) -> set[int]:
        with self._lock:
            if conversation_id is None:
                rows = self._db.execute("SELECT id FROM messages").fetchall()
            else:
                rows = self._db.execute("SELECT id FROM messages WHERE conversation_id=?", (conversation_id,)).fetchall()
        return {r[0] for r in rows}
