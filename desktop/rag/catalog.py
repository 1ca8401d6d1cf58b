"""The catalog: Sprig's own SQLite file and the source of truth for what is indexed.

It holds documents (path, content hash, size, mtime, status, reason, pages, chunks),
every chunk's text and location, and an FTS5 index for keyword search. The vector store
only holds vectors and can always be rebuilt from here.

A document's chunks are committed before its vectors are written (status ``embedding``,
with ``vectors`` counting the chunks embedded so far): keyword search covers it from that
moment, and it is ``indexed`` once every chunk has its vector.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from desktop.rag.types import Chunk
from desktop.sqlite import open_database

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS folders (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT,
    size INTEGER,
    mtime REAL,
    status TEXT NOT NULL,           -- queued | indexing | embedding | indexed | failed
    code TEXT,                      -- machine word for a failure (encrypted, damaged, ...)
    reason TEXT,                    -- plain-language reason for a failure
    pages INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL,
    added_by TEXT,                  -- shared library: who added it (NULL: a local library)
    remote INTEGER NOT NULL DEFAULT 0,  -- 1: another PC's document, cached from the server
    vectors INTEGER NOT NULL DEFAULT 0, -- status embedding: chunks whose vectors are written so far
    UNIQUE (collection, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    page INTEGER,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
"""


@dataclass(frozen=True)
class Document:
    id: int
    collection: str
    path: str
    content_hash: str | None
    size: int | None
    mtime: float | None
    status: str
    code: str | None
    reason: str | None
    pages: int
    chunks: int
    crashes: int
    indexed_at: float | None
    added_by: str | None = None
    remote: int = 0
    vectors: int = 0

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def embedded(self) -> float | None:
        """The share of its chunks that have vectors: 1.0 indexed, a fraction while it is
        ``embedding`` (keyword search only until then), None for other states."""
        if self.status == "indexed":
            return 1.0
        if self.status == "embedding":
            return min(1.0, self.vectors / self.chunks) if self.chunks else 0.0
        return None

    def as_json(self) -> dict:
        return {
            "path": self.path,
            "collection": self.collection,
            "status": self.status,
            "reason": self.reason,
            "code": self.code,
            "pages": self.pages,
            "chunks": self.chunks,
            "size": self.size,
            "indexed_at": self.indexed_at,
            "added_by": self.added_by,
            "on_this_pc": not self.remote,
            "embedded": None if self.embedded is None else round(self.embedded, 3),
        }


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: str
    doc_id: int
    path: str
    seq: int
    page: int | None
    char_start: int
    char_end: int
    text: str


def classify_error(path: Path, exc: BaseException) -> Exception:
    """A plain error for a catalog that cannot be used: permission, full disk or damage."""
    import errno
    import os

    from desktop.errors import CatalogDamaged, DataFolderUnwritable, DiskFull

    text = str(exc).lower()
    folder = path.parent
    if isinstance(exc, PermissionError) or "readonly" in text or "read-only" in text or (
            ("unable to open" in text or "permission" in text)
            and not (os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.R_OK | os.W_OK)))):
        return DataFolderUnwritable(
            f"Sprig cannot write to its data folder {folder} (permission denied). Your documents and "
            "index are untouched: give your user write access to that folder, or choose another one.")
    if "disk is full" in text or "database or disk is full" in text or getattr(exc, "errno", None) in (
            errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DiskFull(f"The disk holding {folder} is full: free some space and try again.")
    return CatalogDamaged(
        f"Sprig's catalog ({path.name}) is damaged ({exc}). Run `sprig check --repair` (or choose "
        "Repair when the window asks) to restore the last good copy; the damaged file is kept.")


class Catalog:
    """Thread-safe access to the catalog file (one connection, serialised by a lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._db = open_database(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise classify_error(self.path, exc) from None
        try:
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            self._db.execute("SELECT count(*) FROM documents").fetchone()
            self._add_missing_columns()
        except sqlite3.Error as exc:
            self._db.close()
            raise classify_error(self.path, exc) from None

    def _add_missing_columns(self) -> None:
        """A catalog written before a column existed gets it (with its default)."""
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(documents)")}
        for name, ddl in (("added_by", "added_by TEXT"), ("remote", "remote INTEGER NOT NULL DEFAULT 0"),
                          ("vectors", "vectors INTEGER NOT NULL DEFAULT 0")):
            if name not in have:
                self._db.execute(f"ALTER TABLE documents ADD COLUMN {ddl}")

    def backup(self, target: Path) -> None:
        """A consistent copy of the catalog (SQLite's backup API), written atomically."""
        import os

        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with self._lock:
            dest = sqlite3.connect(str(tmp))
            try:
                self._db.backup(dest)
            finally:
                dest.close()
        os.replace(tmp, target)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # ---------------------------------------------------------------- collections
    def ensure_collection(self, name: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO collections(name, created) VALUES (?, ?)", (name, time.time())
            )

    def collections(self) -> list[str]:
        names = {r["name"] for r in self._query("SELECT name FROM collections")}
        names |= {r["collection"] for r in self._query("SELECT DISTINCT collection FROM documents")}
        return sorted(names) or ["default"]

    def delete_collection(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE collection=?", (name,))
            db.execute("DELETE FROM folders WHERE collection=?", (name,))
            db.execute("DELETE FROM collections WHERE name=?", (name,))

    # ---------------------------------------------------------------- folders
    def add_folder(self, collection: str, path: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO folders(collection, path) VALUES (?, ?)", (collection, path))

    def remove_folder(self, collection: str, path: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM folders WHERE collection=? AND path=?", (collection, path))

    def folders(self, collection: str | None = None) -> list[tuple[str, str]]:
        if collection is None:
            rows = self._query("SELECT collection, path FROM folders ORDER BY path")
        else:
            rows = self._query("SELECT collection, path FROM folders WHERE collection=? ORDER BY path", (collection,))
        return [(r["collection"], r["path"]) for r in rows]

    # ---------------------------------------------------------------- documents
    @staticmethod
    def _doc(row: sqlite3.Row) -> Document:
        return Document(**{k: row[k] for k in row.keys()})

    def document(self, collection: str, path: str) -> Document | None:
        rows = self._query("SELECT * FROM documents WHERE collection=? AND path=?", (collection, path))
        return self._doc(rows[0]) if rows else None

    def document_by_id(self, doc_id: int) -> Document | None:
        rows = self._query("SELECT * FROM documents WHERE id=?", (doc_id,))
        return self._doc(rows[0]) if rows else None

    def documents(self, collection: str | None = None, status: str | None = None) -> list[Document]:
        sql, params = "SELECT * FROM documents WHERE 1=1", []
        if collection is not None:
            sql += " AND collection=?"
            params.append(collection)
        if status is not None:
            sql += " AND status=?"
            params.append(status)
        return [self._doc(r) for r in self._query(sql + " ORDER BY path", params)]

    def indexed_with_content(self, collection: str, content_hash: str) -> list[Document]:
        """The indexed documents of ``collection`` whose file has this content."""
        rows = self._query("SELECT * FROM documents WHERE collection=? AND content_hash=? AND status='indexed' "
                           "ORDER BY path", (collection, content_hash))
        return [self._doc(r) for r in rows]

    def upsert_document(self, collection: str, path: str, **fields) -> int:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO collections(name, created) VALUES (?, ?)", (collection, time.time())
            )
            row = db.execute(
                "SELECT id FROM documents WHERE collection=? AND path=?", (collection, path)
            ).fetchone()
            if row is None:
                fields.setdefault("status", "queued")
                cols = ["collection", "path", *fields]
                cur = db.execute(
                    f"INSERT INTO documents({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    (collection, path, *fields.values()),
                )
                return int(cur.lastrowid)
            if fields:
                assignments = ", ".join(f"{k}=?" for k in fields)
                db.execute(f"UPDATE documents SET {assignments} WHERE id=?", (*fields.values(), row["id"]))
            return int(row["id"])

    def set_status(self, doc_id: int, status: str, **fields) -> None:
        fields["status"] = status
        assignments = ", ".join(f"{k}=?" for k in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE documents SET {assignments} WHERE id=?", (*fields.values(), doc_id))

    def replace_chunks(
        self,
        doc_id: int,
        chunk_ids: list[str],
        chunks: list[Chunk],
        *,
        content_hash: str,
        size: int,
        mtime: float,
        pages: int,
    ) -> None:
        """Swap a document's chunks and mark it indexed, in one transaction (its vectors are
        written already: a shared library's write)."""
        with self.transaction() as db:
            self._swap_chunks(db, doc_id, chunk_ids, chunks)
            db.execute(
                "UPDATE documents SET status='indexed', code=NULL, reason=NULL, content_hash=?, size=?, "
                "mtime=?, pages=?, chunks=?, vectors=?, crashes=0, indexed_at=? WHERE id=?",
                (content_hash, size, mtime, pages, len(chunks), len(chunks), time.time(), doc_id),
            )

    def commit_chunks(
        self,
        doc_id: int,
        chunk_ids: list[str],
        chunks: list[Chunk],
        *,
        content_hash: str,
        size: int,
        mtime: float,
        pages: int,
    ) -> None:
        """Swap a document's chunks before its vectors are written, in one transaction: keyword
        search has the new version from this commit on (the older one until it), never both.
        The document is ``embedding`` until ``mark_indexed``; its crash count is kept (a
        crash while embedding counts against this content, see Library._guard_crash_loop)."""
        with self.transaction() as db:
            self._swap_chunks(db, doc_id, chunk_ids, chunks)
            db.execute(
                "UPDATE documents SET status='embedding', code=NULL, reason=NULL, content_hash=?, size=?, "
                "mtime=?, pages=?, chunks=?, vectors=0 WHERE id=?",
                (content_hash, size, mtime, pages, len(chunks), doc_id),
            )

    @staticmethod
    def _swap_chunks(db: sqlite3.Connection, doc_id: int, chunk_ids: list[str], chunks: list[Chunk]) -> None:
        db.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
        db.executemany(
            "INSERT INTO chunks(chunk_id, doc_id, seq, page, char_start, char_end, text) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (cid, doc_id, c.seq, c.page, c.char_start, c.char_end, c.text)
                for cid, c in zip(chunk_ids, chunks, strict=True)
            ],
        )

    def set_vectors(self, doc_id: int, done: int) -> None:
        """How many of an ``embedding`` document's chunks have their vectors written."""
        with self.transaction() as db:
            db.execute("UPDATE documents SET vectors=? WHERE id=? AND status='embedding'", (done, doc_id))

    def mark_indexed(self, doc_id: int) -> None:
        """Every chunk of an ``embedding`` document has its vector: it is indexed."""
        with self.transaction() as db:
            db.execute(
                "UPDATE documents SET status='indexed', vectors=chunks, crashes=0, indexed_at=? "
                "WHERE id=? AND status='embedding'", (time.time(), doc_id))

    def delete_document(self, doc_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE id=?", (doc_id,))

    # ---------------------------------------------------------------- a shared library's cache
    def insert_remote(self, collection: str, path: str, content_hash: str, added_by: str, pages: int,
                      chunk_ids: list[str], chunks: list[Chunk]) -> int:
        """Another PC's document, cached from the server: its record and chunks in one transaction."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO collections(name, created) VALUES (?, ?)", (collection, time.time()))
            cur = db.execute(
                "INSERT INTO documents(collection, path, content_hash, status, pages, chunks, indexed_at, "
                "added_by, remote) VALUES (?, ?, ?, 'indexed', ?, ?, ?, ?, 1)",
                (collection, path, content_hash, pages, len(chunks), time.time(), added_by))
            doc_id = int(cur.lastrowid)
            db.executemany(
                "INSERT INTO chunks(chunk_id, doc_id, seq, page, char_start, char_end, text) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(cid, doc_id, c.seq, c.page, c.char_start, c.char_end, c.text)
                 for cid, c in zip(chunk_ids, chunks, strict=True)])
        return doc_id

    def take_over(self, remote_id: int, doc_id: int, size: int, mtime: float) -> None:
        """A file on this PC has the content of a cached remote document: the local record takes
        its chunks (same ids, nothing re-embedded) and the cached copy goes."""
        with self.transaction() as db:
            row = db.execute("SELECT content_hash, pages, chunks, added_by FROM documents WHERE id=?",
                             (remote_id,)).fetchone()
            db.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))  # an older version's
            db.execute("UPDATE chunks SET doc_id=? WHERE doc_id=?", (doc_id, remote_id))
            db.execute("DELETE FROM documents WHERE id=?", (remote_id,))
            db.execute(
                "UPDATE documents SET status='indexed', code=NULL, reason=NULL, content_hash=?, size=?, mtime=?, "
                "pages=?, chunks=?, crashes=0, indexed_at=?, added_by=?, remote=0 WHERE id=?",
                (row["content_hash"], size, mtime, row["pages"], row["chunks"], time.time(), row["added_by"], doc_id))

    def forget_shared_copies(self) -> None:
        """Another server (or none): colleagues' cached documents go, and this PC's own count as
        not yet on the server."""
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE remote=1")
            db.execute("UPDATE documents SET added_by=NULL")

    def set_added_by(self, doc_id: int, added_by: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE documents SET added_by=? WHERE id=?", (added_by, doc_id))

    def switch_ids(self, new_ids: dict[int, dict[str, str]], added_by: dict[int, str] | None = None,
                   drop: Iterable[int] = ()) -> None:
        """Moving a library between a PC and a server, in one transaction: each document's chunk
        ids renamed (doc_id -> {old: new}), who added it recorded, duplicates dropped."""
        with self.transaction() as db:
            for doc_id, mapping in new_ids.items():
                db.executemany("UPDATE chunks SET chunk_id=? WHERE chunk_id=? AND doc_id=?",
                               [(new, old, doc_id) for old, new in mapping.items()])
            for doc_id, who in (added_by or {}).items():
                db.execute("UPDATE documents SET added_by=? WHERE id=?", (who, doc_id))
            db.executemany("DELETE FROM documents WHERE id=?", [(d,) for d in drop])

    def chunks_of(self, doc_id: int) -> list[tuple[str, Chunk]]:
        rows = self._query("SELECT chunk_id, seq, page, char_start, char_end, text FROM chunks WHERE doc_id=? "
                           "ORDER BY seq", (doc_id,))
        return [(r["chunk_id"], Chunk(r["seq"], r["page"], r["char_start"], r["char_end"], r["text"])) for r in rows]

    # ---------------------------------------------------------------- chunks
    def chunk_ids(self, doc_id: int) -> list[str]:
        return [r["chunk_id"] for r in self._query("SELECT chunk_id FROM chunks WHERE doc_id=? ORDER BY seq", (doc_id,))]

    def all_chunk_ids(self, collection: str | None = None, status: str | None = None) -> set[str]:
        """The chunk ids of ``collection`` (None: all), of documents in ``status`` (None: any)."""
        sql, params = "SELECT c.chunk_id FROM chunks c JOIN documents d ON d.id=c.doc_id WHERE 1=1", []
        if collection is not None:
            sql += " AND d.collection=?"
            params.append(collection)
        if status is not None:
            sql += " AND d.status=?"
            params.append(status)
        return {r["chunk_id"] for r in self._query(sql, params)}

    def chunks_by_ids(self, ids: list[str]) -> dict[str, StoredChunk]:
        out: dict[str, StoredChunk] = {}
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            rows = self._query(
                "SELECT c.chunk_id, c.doc_id, d.path, c.seq, c.page, c.char_start, c.char_end, c.text "
                f"FROM chunks c JOIN documents d ON d.id=c.doc_id WHERE c.chunk_id IN ({','.join('?' * len(batch))})",
                batch,
            )
            for r in rows:
                out[r["chunk_id"]] = StoredChunk(**{k: r[k] for k in r.keys()})
        return out

    def chunks_between(self, doc_id: int, page: int | None, lo: int, hi: int) -> list[tuple[int, int, str]]:
        """(start, end, text) of the stored chunks of a page that overlap [lo, hi)."""
        rows = self._query(
            "SELECT char_start, char_end, text FROM chunks WHERE doc_id=? AND page IS ? AND char_start<? AND char_end>? "
            "ORDER BY char_start", (doc_id, page, hi, lo))
        return [(r["char_start"], r["char_end"], r["text"]) for r in rows]

    def page_edges(self, doc_id: int) -> dict[int | None, tuple[str, str, int]]:
        """page -> (text of its first stored chunk, text of its last, where the last ends)."""
        first = self._query("SELECT page, min(char_start) AS s, text FROM chunks WHERE doc_id=? GROUP BY page",
                            (doc_id,))
        last = {r["page"]: (r["text"], r["e"]) for r in self._query(
            "SELECT page, max(char_end) AS e, text FROM chunks WHERE doc_id=? GROUP BY page", (doc_id,))}
        return {r["page"]: (r["text"], *last[r["page"]]) for r in first if r["page"] in last}

    def iter_chunks(self, collection: str, batch: int = 256) -> Iterator[list[StoredChunk]]:
        last = -1
        while True:
            rows = self._query(
                "SELECT c.rowid AS rid, c.chunk_id, c.doc_id, d.path, c.seq, c.page, c.char_start, c.char_end, c.text "
                "FROM chunks c JOIN documents d ON d.id=c.doc_id "
                "WHERE d.collection=? AND d.status='indexed' AND c.rowid>? ORDER BY c.rowid LIMIT ?",
                (collection, last, batch),
            )
            if not rows:
                return
            last = rows[-1]["rid"]
            yield [StoredChunk(**{k: r[k] for k in r.keys() if k != "rid"}) for r in rows]

    def count_chunks(self, collection: str | None = None) -> int:
        if collection is None:
            return int(self._query("SELECT count(*) AS n FROM chunks")[0]["n"])
        return int(
            self._query(
                "SELECT count(*) AS n FROM chunks c JOIN documents d ON d.id=c.doc_id WHERE d.collection=?",
                (collection,),
            )[0]["n"]
        )

    def keyword_search(self, collection: str, fts_query: str, limit: int) -> list[tuple[str, float]]:
        """(chunk_id, score) by BM25, best first; score is -bm25 so higher is better. Documents
        still ``embedding`` are included: their chunks are searchable by keyword at once."""
        if not fts_query:
            return []
        try:
            rows = self._query(
                "SELECT c.chunk_id, bm25(chunks_fts) AS rank FROM chunks_fts "
                "JOIN chunks c ON c.rowid = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id "
                "WHERE chunks_fts MATCH ? AND d.collection=? AND d.status IN ('indexed', 'embedding') "
                "ORDER BY rank LIMIT ?",
                (fts_query, collection, limit),
            )
        except sqlite3.OperationalError:
            return []
        return [(r["chunk_id"], -float(r["rank"])) for r in rows]

    def integrity_ok(self) -> bool:
        return self._query("PRAGMA integrity_check")[0][0] == "ok"
