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


@dataclass
class Message:
    role: str  # user | assistant
    content: str
    meta: dict = field(default_factory=dict)  # citations, abstained, mode, stopped, timings
    id: int | None = None
    created: float = 0.0

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
        return [m.as_history() for m in self.messages if not m.meta.get("abstained")]


def source_dict(passage, n: int | None = None, matched: bool = False) -> dict:
    """What a message keeps about a passage, so its sources show again after a restart."""
    return {
        "n": n,
        "path": passage.path,
        "page": passage.page,
        "char_start": passage.char_start,
        "char_end": passage.char_end,
        "text": passage.text,
        "heading": getattr(passage, "context", "") or None,  # the heading the line sits under
        "score": passage.score,
        "similarity": passage.similarity,
        "bm25": passage.bm25,
        "matched": matched,
    }


def answer_meta(answer, collection: str, model_name: str = "") -> dict:
    """What an answer message keeps besides its text (the window and ``sprig ask --chat`` alike)."""
    return {
        "mode": answer.mode,
        "abstained": answer.abstained,
        "stopped": answer.stopped,
        "collection": collection,
        "model": model_name,
        "citations": [source_dict(c.passage, c.n, c.matched) for c in answer.citations],
        "claims": [c.as_json() for c in answer.claims],
        "confidence": answer.confidence,
        "nearest": [source_dict(p) for p in answer.nearest],
        "timings": {k: round(v, 3) for k, v in answer.timings.items()},
    }


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
                parsed = {"unreadable_meta": True}
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
