"""A shared library: several Sprigs, on several PCs, using one Chroma server.

Everything another Sprig needs to search, cite and show a passage lives on the server:

- each chunk is a Chroma record whose id comes from the collection, the file's *content*
  hash and the chunk's number (never the local path), whose document is the chunk text
  and whose metadata is ``{doc: content hash, seq, page, char_start, char_end}``;
- each document has one record, keyed by its content hash, in a second collection
  (``sprigdocs_…``): name, original path, who added it and when, pages, chunks, and its
  status (``indexing`` while a PC writes it, ``indexed`` once every chunk is there).

"The same file" is the same content: two PCs that drop the same PDF write the same ids,
so the second write changes nothing, and a PC that finds a document already indexed on
the server takes it as it is, without parsing or embedding it again.

The local catalog is a cache of the server (the chunk text, pages and its FTS5 keyword
index, kept in step by ``refresh``): keyword search and citations work exactly as in a
local library, and a lost catalog is rebuilt from the server. The server is the single
writer of record: a document is in the library when its record says ``indexed``.

A server that cannot be reached, answers too slowly or fails raises ``StoreUnavailable``:
the document being written goes back to the queue (nothing local is lost) and indexing
resumes when the server is back.
"""

from __future__ import annotations

import getpass
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from desktop.errors import StoreUnavailable
from desktop.rag.types import Chunk

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 2.0  # searches look for colleagues' new documents at most this often
INDEXING, INDEXED = "indexing", "indexed"
REMOTE_PREFIX = "shared://"
SERVER_KEY = "library_server"  # catalog meta: the server this catalog is a cache of
PULL_DOCS = 20  # colleagues' documents fetched per request when the cache catches up
CHANGES_KEY = "~changes"  # a record whose token every change of a collection renews


def who_am_i(name: str = "") -> str:
    """How this PC signs what it adds: the ``library_name`` setting, else user@host."""
    if name.strip():
        return name.strip()
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "someone"
    return f"{user}@{socket.gethostname()}"


def remote_path(record: dict, key: str) -> str:
    """Where a colleague's document shows in this PC's library: ``shared://who/original/path``."""
    original = str(record.get("path") or record.get("name") or key).lstrip("/\\")
    return f"{REMOTE_PREFIX}{record.get('added_by') or 'someone'}/{original}"


def unwritten(doc) -> bool:
    """This PC's document, indexed before it used this server: searchable here, not yet there
    (the next indexing job writes it, or takes the server's copy of the same content)."""
    return doc.status == "indexed" and not doc.remote and not doc.added_by


def chunk_metadata(content_hash: str, chunk) -> dict:
    meta = {"doc": content_hash, "seq": int(chunk.seq), "char_start": int(chunk.char_start),
            "char_end": int(chunk.char_end)}
    if chunk.page is not None:
        meta["page"] = int(chunk.page)
    return meta


def chunk_from(text: str, meta: dict) -> Chunk:
    return Chunk(int(meta["seq"]), meta.get("page"), int(meta["char_start"]), int(meta["char_end"]), text or "")


@dataclass
class RefreshSummary:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class Sharing:
    """The shared-library side of a Library whose vector store is a Chroma server."""

    def __init__(self, library, store=None):
        """``store``: the server to write to, when it is not (yet) the library's own."""
        self.library = library
        self.store = store or library.store
        self.catalog = library.catalog
        self.me = who_am_i(library.settings.library_name)
        self._refreshed: dict[str, float] = {}
        self._seen: dict[str, str] = {}  # collection -> the changes token its last refresh read

    def open(self) -> None:
        """The library opens on its server."""
        if self.catalog.get_meta(SERVER_KEY) != self.store.url:
            # a first start on this server: what the catalog holds was not written to it
            # (a local library, or another server's); resume() writes this PC's documents
            self.catalog.forget_shared_copies()
            self.catalog.set_meta(SERVER_KEY, self.store.url)

    # ---------------------------------------------------------------- ids and records
    def chunk_ids(self, collection: str, content_hash: str, chunks) -> list[str]:
        from desktop.rag.library import chunk_id

        return [chunk_id(collection, "", content_hash, c.seq) for c in chunks]

    def _record(self, path: str, status: str, pages: int, chunks: int, added_by: str) -> dict:
        return {"name": Path(path).name, "path": str(path), "added_by": added_by, "added_at": time.time(),
                "status": status, "pages": int(pages), "chunks": int(chunks), "writer": self.me}

    # ---------------------------------------------------------------- writes
    def publish(self, collection: str, path: str, content_hash: str, ids: list[str], vectors, chunks,
                pages: int, commit=lambda: None, added_by: str | None = None) -> str:
        """Write a document to the server and, through ``commit``, to the local cache:
        record 'indexing' -> chunks with text and metadata -> local commit -> record 'indexed'.
        Returns who the library says added it: ``added_by`` if given, else the first PC to
        add this content."""
        if added_by is None:
            existing = self.store.record(collection, content_hash)
            added_by = (existing or {}).get("added_by") or self.me
        self.store.put_record(collection, content_hash, self._record(path, INDEXING, pages, len(ids), added_by))
        self.store.upsert(collection, ids, vectors, texts=[c.text for c in chunks],
                          metadatas=[chunk_metadata(content_hash, c) for c in chunks])
        commit()
        self.store.put_record(collection, content_hash, self._record(path, INDEXED, pages, len(ids), added_by))
        self.changed(collection)
        return added_by

    def changed(self, collection: str) -> None:
        """Tell every PC that the collection changed (after the change: a PC that reads the old
        token reads the records after it too)."""
        self.store.put_record(collection, CHANGES_KEY, {"token": uuid.uuid4().hex, "by": self.me,
                                                        "at": time.time()})

    def unpublish(self, collection: str, content_hash: str | None) -> None:
        """Take a document out of the shared library: its chunks, then its record."""
        if not content_hash:
            return
        self.store.delete_where(collection, {"doc": content_hash})
        self.store.delete_record(collection, content_hash)
        self.changed(collection)

    def adopt(self, collection: str, doc_id: int, content_hash: str, size: int, mtime: float) -> bool:
        """A file whose content is already indexed on the server: this PC's record takes the
        server's chunks (from the local cache when it holds them) without parsing or embedding.
        False when the server has no complete copy."""
        record = self.store.record(collection, content_hash)
        if not record or record.get("status") != INDEXED:
            return False
        cached = next((d for d in self.catalog.indexed_with_content(collection, content_hash) if d.remote), None)
        if cached is not None:
            self.catalog.take_over(cached.id, doc_id, size, mtime)
            return True
        rows = self.store.chunks_where(collection, {"doc": content_hash})
        if not rows or len(rows) != int(record.get("chunks") or 0):
            return False  # incomplete (being rewritten): index it here
        rows.sort(key=lambda r: int(r[2]["seq"]))
        self.catalog.replace_chunks(doc_id, [r[0] for r in rows], [chunk_from(r[1], r[2]) for r in rows],
                                    content_hash=content_hash, size=size, mtime=mtime,
                                    pages=int(record.get("pages") or 1))
        self.catalog.set_added_by(doc_id, record.get("added_by"))
        return True

    # ---------------------------------------------------------------- keeping the cache in step
    def due(self, collection: str) -> bool:
        return time.monotonic() - self._refreshed.get(collection, -1e9) >= REFRESH_EVERY_S

    def refresh(self, collection: str | None = None) -> RefreshSummary:
        """Bring the local cache in step with the server: colleagues' new documents come in,
        documents removed from the shared library go."""
        summary = RefreshSummary()
        names = [collection] if collection else sorted(set(self.store.shared_collections())
                                                       | set(self.catalog.collections()))
        for coll in names:
            self._refresh_one(coll, summary)
            self._refreshed[coll] = time.monotonic()
        return summary

    def _refresh_one(self, collection: str, summary: RefreshSummary) -> None:
        # one small read when nothing changed since the last look; every record otherwise
        # (the token is read first: a change made meanwhile renews it again)
        token = str((self.store.record(collection, CHANGES_KEY) or {}).get("token", ""))
        local = self.catalog.documents(collection)
        if token and token == self._seen.get(collection):
            return
        records = self.store.records(collection)
        held = {d.content_hash for d in local if d.content_hash and d.status in ("indexed", "indexing")}
        for doc in local:
            if doc.status != "indexed" or not doc.content_hash or doc.content_hash in records:
                continue
            if unwritten(doc):
                continue  # indexed before this PC used the server: resume() writes it there
            # removed from the shared library (here, or by a colleague)
            self.catalog.delete_document(doc.id)
            self.library.forget_pages(doc.id)
            summary.removed.append(doc.path)
        wanted = [k for k, r in records.items() if r.get("status") == INDEXED and k not in held
                  and self.catalog.document(collection, remote_path(r, k)) is None]
        for start in range(0, len(wanted), PULL_DOCS):  # a few documents' chunks per request
            group = wanted[start:start + PULL_DOCS]
            by_doc: dict[str, list[tuple]] = {}
            where = {"doc": group[0]} if len(group) == 1 else {"doc": {"$in": group}}
            for row in self.store.chunks_where(collection, where):
                by_doc.setdefault(str(row[2].get("doc")), []).append(row)
            for key in group:
                record, rows = records[key], by_doc.get(key, [])
                if not rows or len(rows) != int(record.get("chunks") or 0):
                    continue  # still being written: next time
                rows.sort(key=lambda r: int(r[2]["seq"]))
                path = remote_path(record, key)
                self.catalog.insert_remote(collection, path, key, str(record.get("added_by") or ""),
                                           int(record.get("pages") or 1), [r[0] for r in rows],
                                           [chunk_from(r[1], r[2]) for r in rows])
                summary.added.append(path)
        self._seen[collection] = token

    # ---------------------------------------------------------------- after a crash
    def recover(self) -> None:
        """Records this PC left 'indexing' (killed mid-write): finished if the local cache holds
        the whole document, else taken off the server so that the file is indexed again."""
        for coll in sorted(set(self.store.shared_collections()) | set(self.catalog.collections())):
            records = self.store.records(coll)
            mine = {k: r for k, r in records.items() if r.get("status") == INDEXING and r.get("writer") == self.me}
            if not mine:
                continue
            local = {d.content_hash: d for d in self.catalog.documents(coll, status="indexed") if d.content_hash}
            for key, record in mine.items():
                doc = local.get(key)
                if doc is not None and doc.chunks == int(record.get("chunks") or -1) and \
                        len(self.store.existing(coll, self.catalog.chunk_ids(doc.id))) == doc.chunks:
                    self.store.put_record(coll, key, {**record, "status": INDEXED})
                    self.changed(coll)
                else:
                    self.unpublish(coll, key)

    def report(self) -> dict:
        """Missing: chunks this PC's cache holds that the server lacks. Orphans: server chunks
        whose document has no record."""
        missing = orphans = 0
        for coll in self.catalog.collections():
            known = self.catalog.all_chunk_ids(coll)
            missing += len(known - self.store.existing(coll, sorted(known)))
            records = self.store.records(coll)
            orphans += sum(1 for doc in self.store.chunk_docs(coll).values() if doc not in records)
        return {"missing_vectors": missing, "orphan_vectors": orphans}


def copy_to_server(library, url: str, token: str = "", progress=None) -> dict:
    """Move a local library onto a Chroma server: each document's vectors are copied as they
    are (nothing is re-embedded) under content-keyed ids, with text, metadata and a record.
    The catalog switches to the new ids in one transaction at the end, so a copy cut short
    leaves the local library as it was (and running it again finishes it). Returns counts;
    the caller saves ``chroma_url``."""
    from desktop.rag.vectorstore import VectorStore

    if library.store.shared:
        raise ValueError("this library is already on a server")
    server = VectorStore(url=url, embedding_model=library.embedder.model_id, token=token)
    server.client  # noqa: B018 - connect now: a wrong address fails before anything is written
    sharing = Sharing(library, store=server)
    docs = [d for d in library.catalog.documents() if d.status == "indexed"]
    rekey: dict[int, dict[str, str]] = {}
    signed: dict[int, str] = {}
    duplicates: list[int] = []
    seen: set[tuple[str, str]] = set()
    try:
        for n, doc in enumerate(docs, start=1):
            if progress:
                progress(n, len(docs), doc.path)
            if (doc.collection, doc.content_hash) in seen:
                duplicates.append(doc.id)  # the same content twice in one collection: one copy
                continue
            seen.add((doc.collection, doc.content_hash))
            rows = library.catalog.chunks_of(doc.id)
            old_ids = [cid for cid, _ in rows]
            vectors = library.store.vectors(doc.collection, old_ids)
            if len(vectors) != len(old_ids):
                raise ValueError(f"{doc.path}: {len(old_ids) - len(vectors)} of its vectors are missing; "
                                 "run `sprig check --repair` first")
            chunks = [c for _, c in rows]
            new_ids = sharing.chunk_ids(doc.collection, doc.content_hash, chunks)
            signed[doc.id] = sharing.publish(doc.collection, doc.path, doc.content_hash, new_ids,
                                             [vectors[i] for i in old_ids], chunks, doc.pages,
                                             added_by=doc.added_by or sharing.me)
            rekey[doc.id] = dict(zip(old_ids, new_ids, strict=True))
        library.catalog.switch_ids(rekey, added_by=signed, drop=duplicates)
        library.catalog.set_meta(SERVER_KEY, url)  # the catalog is now a cache of this server
    finally:
        server.close()
    for coll in library.catalog.collections():
        library.store.drop_collection(coll)  # the local copies: the server holds them now
    return {"documents": len(rekey), "duplicates_dropped": len(duplicates)}


def copy_to_local(library, progress=None) -> dict:
    """Bring a shared library back into this PC's data folder: every document the server
    holds (colleagues' too) with its vectors as they are. Returns counts; the caller clears
    ``chroma_url``."""
    from desktop.rag.library import chunk_id
    from desktop.rag.vectorstore import VectorStore

    if not library.store.shared:
        raise ValueError("this library is not on a server")
    library.sharing.refresh()
    local = VectorStore(library.paths.chroma, embedding_model=library.embedder.model_id)
    docs = [d for d in library.catalog.documents() if d.status == "indexed"]
    rekey: dict[int, dict[str, str]] = {}
    try:
        for coll in library.catalog.collections():
            local.drop_collection(coll)  # whatever an earlier copy left
        for n, doc in enumerate(docs, start=1):
            if progress:
                progress(n, len(docs), doc.path)
            rows = library.catalog.chunks_of(doc.id)
            old_ids = [cid for cid, _ in rows]
            vectors = library.store.vectors(doc.collection, old_ids)
            if len(vectors) != len(old_ids):
                raise StoreUnavailable(f"{doc.path}: the server returned {len(vectors)} of {len(old_ids)} vectors")
            new_ids = [chunk_id(doc.collection, doc.path, doc.content_hash, c.seq) for _, c in rows]
            local.upsert(doc.collection, new_ids, [vectors[i] for i in old_ids], doc.id)
            rekey[doc.id] = dict(zip(old_ids, new_ids, strict=True))
        library.catalog.switch_ids(rekey)
        library.catalog.set_meta(SERVER_KEY, "")  # ids are local again: a later return starts afresh
    finally:
        local.close()
    return {"documents": len(rekey)}
