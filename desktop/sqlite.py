"""The one way Sprig opens its SQLite files (the catalog, the chat store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """A connection shared by threads (callers serialise it with a lock), in autocommit mode
    with explicit transactions, write-ahead log and synchronous=FULL (an acknowledged write
    survives a crash or kill -9), foreign keys on, a 5 s wait for another writer, rows by
    name, and ``schema`` (idempotent DDL) applied. Closed again if any of that fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db
