"""The Library: the one object the window, the CLI and the benchmarks call.

It ties the catalog (source of truth), the vector store and the embedder together and
owns indexing: idempotent (deterministic chunk ids, upsert, content-hash skip),
incremental (changed files replaced, deleted files removed, folders synced), atomic per
document, and tolerant of bad files (each gets a reason; the batch goes on).

Keyword first: once a file is parsed and chunked, its chunks and their FTS5 rows are
committed in one transaction (replacing an older version's, which stay searchable until
then), and the document is ``embedding``: keyword search (BM25) finds it at once. Its
vectors are then embedded and stored batch by batch (``vectors`` counts them), and
hybrid retrieval uses each as it lands; the last batch makes it ``indexed``. A cancel or a
kill in that phase leaves it ``embedding``, searchable by keyword, never with two sets of
chunks; the next run (resume() at start-up) writes the missing vectors without parsing
it again. A shared library (``desktop.rag.shared``) stays all at once: see _embed_and_write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from desktop.config import Paths, Settings
from desktop.errors import Cancelled, DocumentError, StoreUnavailable
from desktop.files import is_under
from desktop.rag.catalog import Catalog, Document
from desktop.rag.chunking import chunk_pages, line_key, running_lines
from desktop.rag.loaders import Limits, check_size, is_supported
from desktop.rag.shared import chunk_metadata
from desktop.rag.shared import unwritten as shared_unwritten
from desktop.rag.types import CancelToken, Chunk, IndexSummary, Passage, Progress
from desktop.rag.vector_text import vector_text

log = logging.getLogger(__name__)
ProgressFn = Callable[[Progress], None]
MAX_CRASHES = 2
IN_FLIGHT = "indexing_in_flight"  # catalog meta key: the document being embedded and written
PREPARE_MESSAGE = "preparing the embedder (once per data folder: up to half a minute)"
REBUILD_PENDING = "vector_rebuild_pending"  # catalog meta key, "1" while a rebuild runs
EMBED_BATCH = 64  # chunks embedded (and, in a local library, stored) at a time


@dataclass
class IndexJob:
    """One file for the indexing loop: what ``_plan`` found, and its place in the batch."""

    collection: str
    path: Path
    doc_id: int
    digest: str  # the file's sha256
    size: int
    mtime: float
    vectors_only: bool = False  # its chunks are committed (status embedding): only vectors to write
    n: int = 0  # 1-based place in the batch
    total: int = 0


def file_sha256(path: Path) -> str:
    """The file's sha256; refuses anything but a regular file (a FIFO would block the read)."""
    import stat

    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(0, "not a regular file")
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def chunk_id(collection: str, path: str, content_hash: str, seq: int) -> str:
    key = f"{collection}\0{path}\0{content_hash}\0{seq}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


_SENTENCE_END = re.compile(r"[.!?][\"')\]\u201d\u2019]*(?=\s|$)|\n\s*\n")


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path], list[Path]]:
    """(files, folders, unsupported files named explicitly). Folders are walked recursively."""
    files: list[Path] = []
    folders: list[Path] = []
    unsupported: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        try:
            is_dir = path.is_dir()
        except OSError:  # a name too long for the file system, a loop of links...: fails on its own
            is_dir = False
        if is_dir:
            folders.append(path)
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    child = Path(root) / name
                    if not name.startswith(".") and is_supported(child) and child not in seen:
                        seen.add(child)
                        files.append(child)
        elif path not in seen:
            seen.add(path)
            (files if is_supported(path) or not _exists(path) else unsupported).append(path)
    return files, folders, unsupported


class Library:
    def __init__(self, paths: Paths | None = None, settings: Settings | None = None, embedder=None,
                 store=None):
        from desktop.rag.vectorstore import VectorStore

        self.paths = paths or Paths.default()
        self.settings = settings or Settings.load(self.paths.settings)
        self.catalog = Catalog(self.paths.catalog)
        if embedder is None:
            from desktop.rag.embeddings import Embedder

            embedder = Embedder()
        self.embedder = embedder
        self.store = store or VectorStore(
            self.paths.chroma, url=self.settings.chroma_url, embedding_model=embedder.model_id,
            token=self.settings.chroma_token,
        )
        self._write_lock = threading.Lock()  # one writer at a time: Chroma is not process- or thread-safe
        self._edges_cache: dict[int, dict] = {}  # doc_id -> running headers and footers, page ends
        self.limits = Limits(max_file_bytes=self.settings.max_file_mb * 1024 * 1024, ocr_dir=str(self.paths.ocr))
        self.sharing = None  # a shared library on a Chroma server (see desktop.rag.shared)
        if self.store.shared:
            from desktop.rag.shared import Sharing

            self.sharing = Sharing(self)
            self.sharing.open()
        self.search_note = ""  # why the last search was keyword-only (a shared library's server is down)
        self._check_embedding_model()

    def close(self) -> None:
        self.store.close()
        self.catalog.close()

    def _check_embedding_model(self) -> None:
        recorded = self.catalog.get_meta("embedding_model")
        if recorded is None:
            self.catalog.set_meta("embedding_model", self.embedder.model_id)
        elif recorded != self.embedder.model_id:
            self.needs_rebuild = True
            return
        self.needs_rebuild = self.catalog.get_meta(REBUILD_PENDING) == "1"

    # ---------------------------------------------------------------- queries
    def collections(self) -> list[str]:
        return self.catalog.collections()

    def documents(self, collection: str | None = None) -> list[Document]:
        return self.catalog.documents(collection)

    def search(self, query: str, k: int = 5, collection: str = "default", mode: str = "hybrid") -> list[Passage]:
        """Hybrid search. In a shared library, colleagues' new documents are fetched first (at
        most every few seconds); with the server down, keyword search over the local cache
        still answers and ``search_note`` says so."""
        from desktop.rag.retrieval import hybrid_search

        self.search_note = ""
        if self.sharing is None:
            return hybrid_search(self.catalog, self.store, self.embedder, query, collection, k, mode)
        try:
            self.refresh(collection)
            return hybrid_search(self.catalog, self.store, self.embedder, query, collection, k, mode)
        except StoreUnavailable as exc:
            self.search_note = f"{exc}. Keyword search only, over the documents this PC holds."
            log.warning("%s", self.search_note)
            return hybrid_search(self.catalog, self.store, self.embedder, query, collection, k, "keyword")

    def refresh(self, collection: str | None = None, force: bool = False):
        """A shared library: bring this PC's cache in step with the server (colleagues' new and
        removed documents). Skipped while this process is indexing (it refreshes as it goes)."""
        if self.sharing is None:
            return None
        if not force and collection is not None and not self.sharing.due(collection):
            return None
        if not self._write_lock.acquire(blocking=force):
            return None
        try:
            return self.sharing.refresh(collection)
        finally:
            self._write_lock.release()

    def forget_pages(self, doc_id: int) -> None:
        self._edges_cache.pop(doc_id, None)

    # ---------------------------------------------------------------- indexing
    def whole_sentences(self, passages: list[Passage], max_chars: int = 400) -> list[Passage]:
        """Passages that start or end mid-sentence (chunks are cut by length) extended to the
        sentence's start and end, from the stored text around them, so evidence and quotes
        hold whole sentences."""
        from dataclasses import replace

        out = []
        for p in passages:
            head = p.text[:1]
            if head and (head.islower() or head in ",;:)") and p.char_start > 0:
                prefix = self._page_text(p.doc_id, p.page, max(0, p.char_start - max_chars), p.char_start)
                cut = max(prefix.rfind(". "), prefix.rfind("? "), prefix.rfind("! "), prefix.rfind("\n"))
                if cut >= 0:
                    prefix = prefix[cut + 1:].lstrip()
                    p = replace(p, char_start=p.char_start - len(prefix), text=prefix + p.text)
            if p.text and p.text.rstrip("\"')]”’")[-1:] not in (".", "!", "?", ":"):
                after = self._page_text(p.doc_id, p.page, p.char_end, p.char_end + max_chars)
                end = _SENTENCE_END.search(after)
                if end is not None:
                    suffix = after[:end.end()].rstrip()
                    p = replace(p, char_end=p.char_end + len(suffix), text=p.text + suffix)
            out.append(p)
        return out

    def _page_text(self, doc_id: int, page: int | None, lo: int, hi: int) -> str:
        """The page's text in [lo, hi) as far as stored chunks hold it; the gaps between chunks
        (whitespace they were trimmed of) become line breaks; stops where nothing is stored."""
        buf = ["\n"] * max(0, hi - lo)
        stored = lo
        for start, end, text in self.catalog.chunks_between(doc_id, page, lo, hi):
            a, b = max(start, lo), min(end, hi)
            buf[a - lo:b - lo] = text[a - start:b - start]
            stored = max(stored, b)
        return "".join(buf[:stored - lo]) if hi > lo else ""

    def text_before(self, passages: list[Passage], max_chars: int = 2000) -> list[str]:
        """For each passage, the text just before it (up to ``max_chars``), rebuilt from the
        stored chunks; near the top of a page, the end of the page before comes first (a
        section goes on across pages). What evidence selection reads headings from."""
        out = []
        for p in passages:
            lo = max(0, p.char_start - max_chars)
            text = self._page_text(p.doc_id, p.page, lo, p.char_start)
            if len(text) < p.char_start - lo:
                text += "\n"  # the stored text stops short of the passage: its last line is whole
            if lo == 0 and p.page is not None:
                before = self._page_edges(p.doc_id)["pages"].get(p.page - 1)
                if before is not None and len(text) < max_chars:
                    tail = self._page_text(p.doc_id, p.page - 1, max(0, before - (max_chars - len(text))), before)
                    text = tail + "\n\n" + text
            out.append(text)
        return out

    def is_running_line(self, passage: Passage, line: str) -> bool:
        """Is ``line`` a running header or footer of the passage's document?"""
        return passage.page is not None and line_key(line) in self._page_edges(passage.doc_id)["running"]

    def _page_edges(self, doc_id: int) -> dict:
        """A document's running headers and footers (first or last lines shared by at least 3
        pages and a fifth of its pages, page numbers aside) and where each page's text ends."""
        cached = self._edges_cache.get(doc_id)
        if cached is None:
            edges = self.catalog.page_edges(doc_id)
            running = running_lines({page: (first, last) for page, (first, last, _end) in edges.items()})
            cached = {"running": running, "pages": {page: end for page, (_f, _l, end) in edges.items()}}
            if len(self._edges_cache) > 256:
                self._edges_cache.clear()
            self._edges_cache[doc_id] = cached
        return cached

    def index(
        self,
        paths: Iterable[str | os.PathLike],
        collection: str = "default",
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> IndexSummary:
        """Index files and folders (recursively) into ``collection`` and sync linked folders."""
        with self._write_lock:
            return self._index(list(paths), collection, progress or (lambda p: None), cancel or CancelToken())

    def _index(self, raw_paths, collection, progress: ProgressFn, cancel: CancelToken) -> IndexSummary:
        from desktop.rag.parsing import ParserWorker

        started = time.perf_counter()
        summary = IndexSummary()
        self.catalog.ensure_collection(collection)
        files, folders, unsupported = expand_paths(raw_paths)
        if self.sharing is not None:
            # every file asked for is in the queue before the server is asked anything: if it
            # cannot be reached, resume() finds them all
            for path in files:
                if self.catalog.document(collection, str(path)) is None:
                    self.catalog.upsert_document(collection, str(path), status="queued")
            self.sharing.refresh(collection)  # colleagues' documents first: theirs are not indexed twice
        for folder in folders:
            self.catalog.add_folder(collection, str(folder))
        for path in unsupported:
            reason = f"unsupported file type '{path.suffix or path.name}'"
            doc_id = self.catalog.upsert_document(collection, str(path))
            self.catalog.set_status(doc_id, "failed", code="unsupported", reason=reason)
            summary.failed[str(path)] = reason
        # deletions: documents under a synced folder (or named explicitly) that are gone from disk
        wanted = {str(f) for f in files}
        for doc in self.catalog.documents(collection):
            under = any(is_under(doc.path, folder) for folder in folders)
            named = doc.path in {str(Path(p).expanduser().absolute()) for p in raw_paths}
            if (under or named) and doc.path not in wanted and not Path(doc.path).exists():
                self._remove_doc(doc)
                summary.removed.append(doc.path)
        # what needs work
        todo: list[IndexJob] = []
        count = len(files)
        for i, path in enumerate(files, start=1):
            if cancel.cancelled:
                summary.cancelled = True
                break
            progress(Progress("scan", i, count, str(path)))
            job = self._plan(collection, path, summary)
            if job is not None:
                todo.append(job)
            elif str(path) in summary.indexed:  # already on the shared library's server
                doc = self.catalog.document(collection, str(path))
                summary.pages += doc.pages
                summary.chunks += doc.chunks
                progress(Progress("done", i, count, str(path), pages=doc.pages, chunks=doc.chunks,
                                  chunks_done=doc.chunks, message="already in the shared library"))
            elif str(path) in summary.failed:  # failed before parsing (too large, missing, ...)
                progress(Progress("fail", i, count, str(path), message=summary.failed[str(path)]))
        if summary.cancelled:
            summary.seconds = time.perf_counter() - started
            return summary
        for n, job in enumerate(todo, start=1):
            job.n, job.total = n, len(todo)
        worker = ParserWorker(self.limits, self.settings.parse_timeout_s, self.settings.parse_memory_mb)
        # a document whose chunks are in the catalog already only needs its vectors: not parsed
        to_parse = iter([job for job in todo if not job.vectors_only])

        def parse_next() -> None:
            job = next(to_parse, None)
            if job is not None:
                worker.submit(job.path)  # parsed while the file before it embeds

        try:
            parse_next()
            for job in todo:
                n, path = job.n, job.path
                if cancel.cancelled:
                    summary.cancelled = True
                    break
                pages = None
                if not job.vectors_only:
                    progress(Progress("parse", n, len(todo), str(path)))

                    def ocr_progress(done: int, total: int, n=n, path=path) -> None:
                        # scanned pages read so far: the file's bar moves page by page
                        progress(Progress("parse", n, len(todo), str(path), pages=total, chunks=total,
                                          chunks_done=done, message=f"OCR: page {done} of {total}"))

                    try:
                        pages = worker.collect(ocr_progress, cancel)
                    except DocumentError as exc:
                        pages = exc
                    except Cancelled:
                        summary.cancelled = True
                        break
                    parse_next()
                    if isinstance(pages, DocumentError):
                        self._fail(job.doc_id, pages, summary, str(path), job.digest)
                        progress(Progress("fail", n, len(todo), str(path), message=pages.reason))
                        continue
                try:
                    self._index_one(job, pages, progress, cancel)
                except Cancelled:
                    summary.cancelled = True
                    break
                except (OSError, sqlite3.Error) as exc:
                    # writing failed (a full disk, a size limit, lost permission): this document is
                    # left for recover() to re-queue, and the job stops with a plain message
                    from desktop.rag.catalog import classify_error

                    raise classify_error(self.paths.catalog, exc) from None
                summary.indexed.append(str(path))
                doc = self.catalog.document_by_id(job.doc_id)
                summary.pages += doc.pages
                summary.chunks += doc.chunks
                progress(Progress("done", n, len(todo), str(path), pages=doc.pages, chunks=doc.chunks,
                                  chunks_done=doc.chunks))
        finally:
            worker.close()
            if summary.cancelled:
                self._forget_unstarted(collection)
        if summary.indexed or summary.removed:
            self.backup_catalog()
        summary.seconds = time.perf_counter() - started
        return summary

    def backup_catalog(self) -> None:
        """Refresh the last good copy of the catalog (``sprig check --repair`` restores it)."""
        import sqlite3

        try:
            self.catalog.backup(self.paths.catalog_backup)
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not back up the catalog: %s", exc)

    def _plan(self, collection: str, path: Path, summary: IndexSummary) -> IndexJob | None:
        """None if ``path`` needs no work; else what to do with it."""
        try:
            stat = path.stat()
        except OSError as exc:
            doc_id = self.catalog.upsert_document(collection, str(path))
            error = (DocumentError("missing", "file not found") if isinstance(exc, FileNotFoundError)
                     else DocumentError("unreadable", f"cannot read the file ({exc.strerror})"))
            self._fail(doc_id, error, summary, str(path), hash_file=False)
            return None
        doc = self.catalog.document(collection, str(path))
        unwritten = self.sharing is not None and doc is not None and shared_unwritten(doc)
        if doc and doc.status == "indexed" and doc.size == stat.st_size and doc.mtime == stat.st_mtime \
                and not unwritten:
            summary.skipped.append(str(path))
            return None
        try:
            check_size(path, self.limits)  # before hashing: a huge file is never read at all
        except DocumentError as exc:
            if exc.code in ("too_large", "not_a_file"):
                doc_id = doc.id if doc else self.catalog.upsert_document(collection, str(path))
                self._fail(doc_id, exc, summary, str(path), hash_file=False)
                return None
        try:
            digest = file_sha256(path)
        except OSError as exc:
            doc_id = self.catalog.upsert_document(collection, str(path))
            self._fail(doc_id, DocumentError("unreadable", f"cannot read the file ({exc.strerror})"), summary, str(path))
            return None
        if doc and doc.status == "failed" and doc.code in ("timeout", "too_large") and self._limits_raised(doc):
            doc = self._forget_failure(doc)  # the limit it failed under was raised since
        if doc and doc.content_hash == digest and doc.status in ("indexed", "failed") and not unwritten:
            if doc.status == "indexed" or doc.crashes >= MAX_CRASHES or doc.code not in ("crashed", "timeout"):
                # unchanged: same content as last time (a failure would fail again)
                self.catalog.upsert_document(collection, str(path), size=stat.st_size, mtime=stat.st_mtime)
                if doc.status == "indexed":
                    summary.skipped.append(str(path))
                else:
                    summary.failed[str(path)] = doc.reason or "failed"
                return None
        if doc and doc.status == "embedding" and doc.content_hash == digest and self.sharing is None:
            # its chunks are in the catalog (keyword search has them): only vectors are missing
            self.catalog.upsert_document(collection, str(path), size=stat.st_size, mtime=stat.st_mtime)
            return IndexJob(collection, path, doc.id, digest, stat.st_size, stat.st_mtime, vectors_only=True)
        if doc is None:
            doc_id = self.catalog.upsert_document(collection, str(path), status="queued")
        else:
            doc_id = doc.id
            if doc.content_hash != digest:
                self.catalog.upsert_document(collection, str(path), crashes=0)
        if self.sharing is not None and self._plan_shared(collection, path, doc, doc_id, digest, stat, summary):
            return None
        return IndexJob(collection, path, doc_id, digest, stat.st_size, stat.st_mtime)

    def _plan_shared(self, collection, path, doc, doc_id, digest, stat, summary) -> bool:
        """A shared library: True when the file needs no parsing (the same content is already
        in this collection under another name, or on the server)."""
        twin = next((d for d in self.catalog.indexed_with_content(collection, digest)
                     if d.id != doc_id and not d.remote), None)
        if twin is not None:
            self._fail(doc_id, DocumentError("duplicate", f"the same content as {twin.path}, already in the "
                                             "library"), summary, str(path), digest)
            return True
        if self.sharing.adopt(collection, doc_id, digest, stat.st_size, stat.st_mtime):
            if doc is not None and doc.status == "indexed" and doc.content_hash not in (None, digest):
                self.sharing.unpublish(collection, doc.content_hash)  # its older version
            self._edges_cache.pop(doc_id, None)
            summary.indexed.append(str(path))
            return True
        return False

    def _limits_now(self) -> dict:
        return {"parse_timeout_s": self.settings.parse_timeout_s, "max_file_mb": self.settings.max_file_mb}

    def _limits_raised(self, doc: Document) -> bool:
        """A failure under a limit is final only while that limit is not raised."""
        try:
            then = json.loads(self.catalog.get_meta(f"limits:{doc.id}") or "{}")
        except ValueError:
            return False
        key = "parse_timeout_s" if doc.code == "timeout" else "max_file_mb"
        return key in then and self._limits_now()[key] > then[key]

    def _forget_failure(self, doc: Document) -> Document:
        self.catalog.upsert_document(doc.collection, doc.path, crashes=0, content_hash=None, status="queued")
        self.catalog.set_meta(f"limits:{doc.id}", "")
        return self.catalog.document_by_id(doc.id)

    def _fail(self, doc_id: int, error: DocumentError, summary: IndexSummary, path: str,
              digest: str | None = None, hash_file: bool = True) -> None:
        if error.code in ("timeout", "too_large"):
            # recorded against the limits in force, so raising a limit later retries the file
            self.catalog.set_meta(f"limits:{doc_id}", json.dumps(self._limits_now()))
        doc = self.catalog.document_by_id(doc_id)
        crashes = (doc.crashes if doc else 0) + (1 if error.code in ("crashed", "timeout") else 0)
        reason = error.reason
        if error.code in ("crashed", "timeout") and crashes >= MAX_CRASHES:
            reason += f" ({crashes} times; it will not be retried until it changes)"
        # a file that fails now has no chunks: drop any from an older version. Mark it in
        # flight first, so that a kill between the two writes is repaired by recover().
        if doc and doc.chunks:
            self.catalog.set_status(doc_id, "indexing")
            self._drop_vectors(doc)
        with self.catalog.transaction() as db:
            db.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
            db.execute(
                "UPDATE documents SET status='failed', code=?, reason=?, crashes=?, pages=0, chunks=0, "
                "content_hash=?, size=?, mtime=? WHERE id=?",
                (error.code, reason, crashes, digest or (_hash_or_none(path) if hash_file else None),
                 _size(path), _mtime(path), doc_id),
            )
        summary.failed[path] = reason

    def _index_one(self, job: IndexJob, pages, progress: ProgressFn, cancel: CancelToken) -> None:
        # which document this process is working on, for the crash-loop guard in recover()
        self.catalog.set_meta(IN_FLIGHT, json.dumps({"doc_id": job.doc_id,
                                                     "crash_log_size": _size(self.paths.crash_log) or 0,
                                                     "content_hash": job.digest}))
        try:
            self._embed_and_write(job, pages, progress, cancel)
        finally:
            self.catalog.set_meta(IN_FLIGHT, "")

    def _embed_and_write(self, job: IndexJob, pages, progress: ProgressFn, cancel: CancelToken) -> None:
        """Keyword first: the chunks (and their FTS5 rows) are committed, then the vectors are
        written batch by batch. ``pages`` is None for a document whose chunks are committed
        already (``job.vectors_only``): only its missing vectors are written."""
        if job.vectors_only:
            stored = self.catalog.chunks_of(job.doc_id)
            ids = [cid for cid, _ in stored]
            chunks = [c for _, c in stored]
            npages = self.catalog.document_by_id(job.doc_id).pages
        else:
            chunks = chunk_pages(
                pages, self.embedder.tokenizer, self.settings.chunk_tokens, self.settings.chunk_overlap
            )
            npages = sum(1 for p in pages if p.number is not None) or 1
            if not chunks:
                raise DocumentError("no_text", "the file contains no text")
            ids = [chunk_id(job.collection, str(job.path), job.digest, c.seq) for c in chunks]
        texts = [vector_text(job.path, c) for c in chunks]  # what each chunk's vector is made from

        def report(stage: str, done: int, message: str = "") -> None:
            progress(Progress(stage, job.n, job.total, str(job.path), pages=npages, chunks=len(chunks),
                              chunks_done=done, message=message))

        if self.sharing is not None:
            # a shared library stays all at once: a colleague's Sprig reads the chunk text from
            # the server, so a document is published there (text and vectors) in one write
            self._prepare_embedder(report)
            vectors = self._embed_all(texts, report, cancel)
            report("store", len(chunks))
            self._write_shared(job, npages, chunks, vectors)
            return
        if not job.vectors_only:
            old_ids = set(self.catalog.chunk_ids(job.doc_id))
            # one transaction: keyword search has the older version until here, the new one after
            self.catalog.commit_chunks(job.doc_id, ids, chunks, content_hash=job.digest, size=job.size,
                                       mtime=job.mtime, pages=npages)
            self._edges_cache.pop(job.doc_id, None)  # its pages changed
            # the older version's vectors; a kill before this leaves orphans, which recover() deletes
            self.store.delete_ids(job.collection, sorted(old_ids - set(ids)))
            report("store", 0)  # searchable by keyword from now on
        self._prepare_embedder(report)
        self._write_vectors(job, ids, texts, report, cancel)

    def _prepare_embedder(self, report) -> None:
        if getattr(self.embedder, "needs_build", False):
            # the first document in a fresh data folder: say why nothing moves for a while
            report("prepare", 0, PREPARE_MESSAGE)
            self.embedder.load()

    def _write_vectors(self, job: IndexJob, ids: list[str], texts: list[str], report,
                       cancel: CancelToken) -> None:
        """Embed and store the vectors of an ``embedding`` document, batch by batch, then mark it
        indexed. Cancelled or killed, it stays ``embedding`` (searchable by keyword), and the
        next run writes only the vectors the store does not hold yet."""
        have = self.store.existing(job.collection, ids) if job.vectors_only else set()
        missing = [i for i, cid in enumerate(ids) if cid not in have]
        done = len(ids) - len(missing)
        if job.vectors_only:
            self.catalog.set_vectors(job.doc_id, done)  # what the store holds (a rebuild may have cleared it)
        report("embed", done)
        for start in range(0, len(missing), EMBED_BATCH):
            cancel.raise_if_cancelled()
            rows = missing[start:start + EMBED_BATCH]
            vectors = self.embedder.embed([texts[i] for i in rows])
            self.store.upsert(job.collection, [ids[i] for i in rows], vectors, job.doc_id)
            done += len(rows)
            self.catalog.set_vectors(job.doc_id, done)  # after the upsert: never more than stored
            report("embed", done)
        self.catalog.mark_indexed(job.doc_id)

    def _embed_all(self, texts: list[str], report, cancel: CancelToken):
        import numpy as np

        report("embed", 0)
        parts = []
        for start in range(0, len(texts), EMBED_BATCH):
            cancel.raise_if_cancelled()
            parts.append(self.embedder.embed(texts[start:start + EMBED_BATCH]))
            report("embed", min(len(texts), start + EMBED_BATCH))
        cancel.raise_if_cancelled()
        return np.concatenate(parts)

    def _write_shared(self, job: IndexJob, npages: int, chunks: list[Chunk], vectors) -> None:
        """The write phase on a server. A server lost mid-way leaves the document queued (its
        older version, if any, still searchable here) and stops the batch: resume() picks it up."""
        collection, path, doc_id, digest = job.collection, job.path, job.doc_id, job.digest
        size, mtime = job.size, job.mtime
        before = self.catalog.document_by_id(doc_id)
        old_hash = before.content_hash if before and before.status == "indexed" else None
        ids = self.sharing.chunk_ids(collection, digest, chunks)

        def commit() -> None:
            self.catalog.replace_chunks(doc_id, ids, chunks, content_hash=digest, size=size, mtime=mtime,
                                        pages=npages)

        self.catalog.set_status(doc_id, "indexing")
        try:
            added_by = self.sharing.publish(collection, str(path), digest, ids, vectors, chunks, npages, commit)
            if old_hash and old_hash != digest:
                self.sharing.unpublish(collection, old_hash)  # the file's older version
        except StoreUnavailable:
            doc = self.catalog.document_by_id(doc_id)
            if doc is not None and doc.status == "indexing":
                # an older version stays searchable here (resume() sees the file changed); a new
                # document waits in the queue
                self.catalog.set_status(doc_id, "indexed" if before and before.status == "indexed" else "queued")
            raise
        self.catalog.set_added_by(doc_id, added_by)
        self._edges_cache.pop(doc_id, None)

    def _drop_vectors(self, doc: Document) -> None:
        """A document's vectors: by document id here, by content on a shared library's server."""
        if self.sharing is not None:
            self.sharing.unpublish(doc.collection, doc.content_hash)
        else:
            self.store.delete_document(doc.collection, doc.id)

    def _forget_unstarted(self, collection: str) -> None:
        """After a cancel, new documents that never got indexed leave no trace."""
        for doc in self.catalog.documents(collection, status="queued"):
            if not doc.chunks:
                self.catalog.delete_document(doc.id)

    def _remove_doc(self, doc: Document) -> None:
        # catalog first: a kill in between leaves orphan vectors, which recover() deletes
        self.catalog.delete_document(doc.id)
        if self.sharing is None or doc.status in ("indexed", "indexing") or doc.chunks:
            self._drop_vectors(doc)
        self._edges_cache.pop(doc.id, None)

    def remove(self, path: str | os.PathLike, collection: str | None = None) -> list[str]:
        """Remove a file, or everything under a folder, from the index. Returns removed paths."""
        target = str(Path(path).expanduser().absolute())
        removed = []
        with self._write_lock:
            for doc in self.catalog.documents(collection):
                if is_under(doc.path, target, or_same=True):
                    self._remove_doc(doc)
                    removed.append(doc.path)
            for coll, folder in self.catalog.folders(collection):
                if is_under(folder, target, or_same=True):
                    self.catalog.remove_folder(coll, folder)
        return removed

    def delete_collection(self, collection: str) -> None:
        with self._write_lock:
            self.catalog.delete_collection(collection)
            self.store.drop_collection(collection)  # a kill before this is repaired by recover()

    def sync_folders(self, collection: str | None = None, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> IndexSummary:
        """Re-scan every linked folder: index new and changed files, drop deleted ones."""
        total = IndexSummary()
        by_collection: dict[str, list[str]] = {}
        for coll, folder in self.catalog.folders(collection):
            by_collection.setdefault(coll, []).append(folder)
        for coll, folders in by_collection.items():
            existing = [f for f in folders if Path(f).is_dir()]
            total.merge(self.index(existing, coll, progress, cancel))
        return total

    # ---------------------------------------------------------------- recovery
    def recover(self) -> list[str]:
        """After a crash: documents caught mid-write lose their partial vectors and are re-queued;
        vectors the catalog does not know are deleted. A document caught while ``embedding``
        keeps its chunks (searchable by keyword) and the vectors it has: resume() writes the
        rest without parsing it again. Returns the paths to index again."""
        requeue = []
        with self._write_lock:
            for doc in self.catalog.documents():
                if doc.status == "embedding":
                    requeue.append(doc.path)
                elif doc.status in ("indexing",):
                    self._drop_vectors(doc)
                    with self.catalog.transaction() as db:
                        db.execute("DELETE FROM chunks WHERE doc_id=?", (doc.id,))
                        db.execute(
                            "UPDATE documents SET status='queued', chunks=0, content_hash=NULL WHERE id=?",
                            (doc.id,),
                        )
                    requeue.append(doc.path)
                elif doc.status == "queued":
                    requeue.append(doc.path)
            self._guard_crash_loop()
            if self.sharing is not None:
                # other PCs' chunks are not in this catalog: no orphan sweep, only this PC's
                # own unfinished writes are cleared
                self.sharing.recover()
                return requeue
            collections = self.catalog.collections()
            for coll in collections:
                known = self.catalog.all_chunk_ids(coll)
                orphans = self.store.all_ids(coll) - known
                self.store.delete_ids(coll, sorted(orphans))
            for coll in set(self.store.collection_names()) - set(collections):
                self.store.drop_collection(coll)  # deleted from the catalog, not yet from Chroma
        return requeue

    def _guard_crash_loop(self) -> None:
        """A native crash while indexing a document counts against that document's content; after
        MAX_CRASHES it is marked failed, not retried at every start. A kill or a power cut leaves
        no crash log and counts nothing."""
        raw = self.catalog.get_meta(IN_FLIGHT)
        if not raw:
            return
        self.catalog.set_meta(IN_FLIGHT, "")
        try:
            info = json.loads(raw)
            doc = self.catalog.document_by_id(int(info["doc_id"]))
            log_stat = self.paths.crash_log.stat()
        except (ValueError, KeyError, TypeError, OSError):
            return
        # the crash log grew while this document was in flight: a native crash, not a kill
        if doc is None or log_stat.st_size <= int(info.get("crash_log_size", 0)):
            return
        crashes = doc.crashes + 1
        if crashes < MAX_CRASHES:
            # the count belongs to this content: a changed file starts again from zero (see _plan)
            self.catalog.upsert_document(doc.collection, doc.path, crashes=crashes,
                                         content_hash=info.get("content_hash"))
            return
        if doc.chunks:
            self._drop_vectors(doc)
        with self.catalog.transaction() as db:
            db.execute("DELETE FROM chunks WHERE doc_id=?", (doc.id,))
            db.execute(
                "UPDATE documents SET status='failed', code='crashed', reason=?, crashes=?, pages=0, "
                "chunks=0, content_hash=? WHERE id=?",
                (f"Sprig crashed {crashes} times while indexing this file; it will not be retried until "
                 "it changes", crashes, info.get("content_hash"), doc.id))

    def resume(self, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> IndexSummary:
        """Index again whatever a crash or a cancel left queued, write the missing vectors of
        documents left ``embedding``, and index again indexed files that changed on disk (a
        changed file keeps its old chunks until the new ones are committed)."""
        total = IndexSummary()
        queued: dict[str, list[str]] = {}
        for doc in self.catalog.documents():
            if doc.status in ("queued", "embedding") or (doc.status == "indexed" and _changed_on_disk(doc)) or (
                    self.sharing is not None and shared_unwritten(doc) and _exists(Path(doc.path))):
                queued.setdefault(doc.collection, []).append(doc.path)
        for coll, paths in queued.items():
            total.merge(self.index(paths, coll, progress, cancel))
        return total

    def rebuild_vectors(self, collection: str | None = None, progress: ProgressFn | None = None,
                        cancel: CancelToken | None = None) -> int:
        """Re-embed every stored chunk into a fresh vector collection (the catalog is the truth)."""
        cancel = cancel or CancelToken()
        done = 0
        with self._write_lock:
            # until the last vector is written the store is incomplete: a kill or a cancel
            # leaves this flag set, and needs_rebuild says so on the next start
            self.catalog.set_meta(REBUILD_PENDING, "1")
            for coll in [collection] if collection else self.catalog.collections():
                if self.sharing is None:
                    self.store.drop_collection(coll)  # on a server, vectors are overwritten in place
                    for doc in self.catalog.documents(coll, status="embedding"):
                        self.catalog.set_vectors(doc.id, 0)  # theirs went too: resume() writes them all
                total = self.catalog.count_chunks(coll)
                for batch in self.catalog.iter_chunks(coll):
                    cancel.raise_if_cancelled()
                    vectors = self.embedder.embed([vector_text(c.path, c) for c in batch])
                    by_doc: dict[int, list[int]] = {}
                    for i, c in enumerate(batch):
                        by_doc.setdefault(c.doc_id, []).append(i)
                    for doc_id, rows in by_doc.items():
                        ids = [batch[i].chunk_id for i in rows]
                        if self.sharing is None:
                            self.store.upsert(coll, ids, vectors[rows], doc_id)
                        else:
                            digest = self.catalog.document_by_id(doc_id).content_hash
                            self.store.upsert(coll, ids, vectors[rows], texts=[batch[i].text for i in rows],
                                              metadatas=[chunk_metadata(digest, batch[i]) for i in rows])
                    done += len(batch)
                    if progress:
                        progress(Progress("rebuild", 1, 1, coll, chunks=total, chunks_done=done))
            self.catalog.set_meta("embedding_model", self.embedder.model_id)
            self.catalog.set_meta(REBUILD_PENDING, "0")
            self.needs_rebuild = False
        return done

    def consistency_report(self) -> dict:
        """Counts that must all be zero for a healthy store with nothing left to do (used by
        tests and `sprig check`). ``in_flight``: documents not finished, caught mid-write or
        still ``embedding`` (searchable by keyword; the next indexing run writes their vectors)."""
        if self.sharing is not None:
            counts = self.sharing.report()
        else:
            counts = {"missing_vectors": 0, "orphan_vectors": 0}
            for coll in self.catalog.collections():
                known = self.catalog.all_chunk_ids(coll)
                stored = self.store.all_ids(coll)
                # an embedding document's vectors are still being written: counted in flight
                counts["missing_vectors"] += len(self.catalog.all_chunk_ids(coll, status="indexed") - stored)
                counts["orphan_vectors"] += len(stored - known)
        return {
            **counts,
            # documents not finished: caught mid-write, or searchable by keyword only so far
            "in_flight": sum(len(self.catalog.documents(status=s)) for s in ("indexing", "embedding")),
            "catalog_ok": self.catalog.integrity_ok(),
        }


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _hash_or_none(path: str) -> str | None:
    try:
        return file_sha256(Path(path))
    except OSError:
        return None


def _changed_on_disk(doc: Document) -> bool:
    """The file exists and its size or mtime differ from what was indexed."""
    try:
        stat = os.stat(doc.path)
    except OSError:
        return False
    return stat.st_size != doc.size or stat.st_mtime != doc.mtime


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
