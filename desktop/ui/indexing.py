"""The indexing lane: one job at a time, in the background, cancellable.

Drops, "Add files…", removals, folder syncs and the start-up recovery are queued here
and run one after another on a worker (the library also serialises writers). The
controller keeps what the views need: the running request, its latest progress, and the
files still waiting, so the list can show them as queued before the job reaches them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from desktop.display import display_name
from desktop.errors import StoreUnavailable
from desktop.rag.types import CancelToken, IndexSummary, Progress
from desktop.ui.errors import user_message
from desktop.ui.workers import Worker

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.08  # at most ~12 progress signals a second reach the GUI


@dataclass
class Request:
    kind: str  # index | sync | remove | startup | delete_collection
    collection: str | None
    paths: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.kind == "index":
            if len(self.paths) == 1:
                return f"Indexing {display_name(self.paths[0])}"
            return f"Indexing {len(self.paths)} items"
        return {
            "sync": "Checking linked folders for changes",
            "remove": "Removing documents",
            "startup": "Checking the index",
            "delete_collection": f"Deleting collection {self.collection}",
        }.get(self.kind, self.kind)


class _Throttle:
    """Pass a progress event on if it changes stage, ends a file, or enough time has passed."""

    def __init__(self, emit):
        self.emit = emit
        self.last = 0.0
        self.last_key = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        key = (p.stage, p.path)
        if p.stage in ("done", "fail") or key != self.last_key or now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            self.last_key = key
            self.emit(p)


def run_request(library, request: Request, cancel: CancelToken, report) -> IndexSummary:
    """The job body (runs on a worker thread; touches no widget)."""
    progress = _Throttle(report)
    started = time.perf_counter()
    if request.kind == "index":
        summary = library.index(request.paths, request.collection or "default", progress=progress, cancel=cancel)
    elif request.kind == "sync":
        summary = library.sync_folders(request.collection, progress=progress, cancel=cancel)
    elif request.kind == "remove":
        summary = IndexSummary()
        for path in request.paths:
            summary.removed.extend(library.remove(path, request.collection))
    elif request.kind == "delete_collection":
        library.delete_collection(request.collection)
        summary = IndexSummary()
    elif request.kind == "startup":
        from desktop.rag.health import ensure_store

        summary = IndexSummary()
        # check the vector store in a child process; a damaged one is moved aside and rebuilt
        # from the catalog (with progress), then documents caught mid-write are queued again
        report = ensure_store(library.paths, library.settings, progress=progress, library=library)
        if report.status != "ok":
            log.warning("vector store: %s", report.message)
        embedder = library.embedder
        if getattr(embedder, "needs_build", False) and not cancel.cancelled:
            # a fresh data folder: build the embedder now, before the first drop needs it
            from desktop.rag.library import PREPARE_MESSAGE

            progress(Progress("prepare", 1, 1, "", message=PREPARE_MESSAGE))
            embedder.load()
        if library.sharing is not None:
            library.refresh(force=True)  # a shared library: what colleagues added or removed since
        summary.merge(library.resume(progress=progress, cancel=cancel))
        if not cancel.cancelled:
            summary.merge(library.sync_folders(None, progress=progress, cancel=cancel))
    else:
        raise ValueError(f"unknown request {request.kind!r}")
    summary.seconds = time.perf_counter() - started
    return summary


SERVER_RETRY_S = 30


class IndexingController(QObject):
    progress = Signal(object)  # Progress of the running job
    state_changed = Signal()  # started, finished, queued or cancelled something
    documents_changed = Signal()  # the catalog changed: lists should refresh
    job_finished = Signal(object, object)  # Request, IndexSummary
    job_failed = Signal(object, str)  # Request, plain message
    folders_changed = Signal()  # linked folders may have changed (the watcher re-reads them)

    def __init__(self, library, parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.queue: deque[Request] = deque()
        self.current: Request | None = None
        self.last_progress: Progress | None = None
        self._worker: Worker | None = None
        self._cancel: CancelToken | None = None
        self._closing = False
        # a shared library's server went away: try again (recover, resume) until it is back
        self.retry = QTimer(self)
        self.retry.setSingleShot(True)
        self.retry.setInterval(SERVER_RETRY_S * 1000)
        self.retry.timeout.connect(self.startup)

    # ------------------------------------------------------------ requests
    def add(self, paths: list[str | Path], collection: str) -> None:
        paths = [str(Path(p).absolute()) for p in paths]
        if paths:
            self._enqueue(Request("index", collection, paths))

    def remove(self, paths: list[str], collection: str | None) -> None:
        if paths:
            self._enqueue(Request("remove", collection, list(paths)))

    def sync(self, collection: str | None = None) -> None:
        """Re-scan linked folders (None: every collection); a sync already waiting absorbs it."""
        for waiting in self.queue:
            if waiting.kind == "sync" and waiting.collection in (None, collection):
                return
        self._enqueue(Request("sync", collection))

    def startup(self) -> None:
        self._enqueue(Request("startup", None))

    def delete_collection(self, name: str) -> None:
        self.queue = deque(r for r in self.queue if r.collection != name)
        if self.current and self.current.collection == name and self._cancel:
            self._cancel.cancel()
        self._enqueue(Request("delete_collection", name))

    def cancel(self) -> None:
        """Stop the running indexing job and drop the indexing still waiting (not removals)."""
        self.queue = deque(r for r in self.queue if r.kind in ("remove", "delete_collection"))
        if self._cancel is not None and self.current and self.current.kind in ("index", "sync", "startup"):
            self._cancel.cancel()
        self.state_changed.emit()

    # ------------------------------------------------------------ state for the views
    @property
    def busy(self) -> bool:
        return self.current is not None

    @property
    def cancelling(self) -> bool:
        return self._cancel is not None and self._cancel.cancelled

    def waiting_paths(self, collection: str) -> list[str]:
        """Files (and folders) named by requests that the library has not listed yet: the
        list shows them as queued until the catalog knows them."""
        out: list[str] = []
        current = self.current
        if current is not None and current.kind == "index" and current.collection == collection:
            scanning = self.last_progress is not None
            out.extend(p for p in current.paths if not (scanning and Path(p).is_dir()))
        for request in self.queue:
            if request.kind == "index" and request.collection == collection:
                out.extend(request.paths)
        return out

    # ------------------------------------------------------------ running
    def _enqueue(self, request: Request) -> None:
        if self._closing:
            return
        self.queue.append(request)
        self.state_changed.emit()
        if request.kind == "index":
            self.documents_changed.emit()  # show the new files as queued right away
        self._next()

    def _next(self) -> None:
        if self.current is not None or not self.queue or self._closing:
            return
        request = self.queue.popleft()
        self.current = request
        self.last_progress = None
        self._cancel = CancelToken()
        worker = Worker(run_request, self.library, request, self._cancel, name=f"index:{request.kind}")
        worker.on_quit(self._cancel.cancel)
        worker.connect(
            yielded=self._on_progress,
            returned=lambda summary, r=request: self._on_done(r, summary),
            errored=lambda exc, r=request: self._on_error(r, exc),
            aborted=lambda r=request: self._on_done(r, IndexSummary(cancelled=True)),
            finished=self._on_finished,
        )
        self._worker = worker
        self.state_changed.emit()
        worker.start()

    def _on_progress(self, p: Progress) -> None:
        self.last_progress = p
        self.progress.emit(p)
        if p.stage in ("scan", "store", "done", "fail"):  # store: a document's chunks are committed
            self.documents_changed.emit()

    def _on_done(self, request: Request, summary: IndexSummary) -> None:
        self.job_finished.emit(request, summary)

    def _on_error(self, request: Request, exc: BaseException) -> None:
        message = user_message(exc)
        if isinstance(exc, StoreUnavailable) and not self._closing:
            self.retry.start()
            message += (f". Nothing is lost: the files wait in the queue and Sprig tries again every "
                        f"{SERVER_RETRY_S} s")
        self.job_failed.emit(request, message)

    def _on_finished(self) -> None:
        request = self.current
        self.current = None
        self.last_progress = None
        self._worker = None
        self._cancel = None
        self.documents_changed.emit()
        if request is not None and request.kind in ("index", "sync", "remove", "startup", "delete_collection"):
            self.folders_changed.emit()
        self.state_changed.emit()
        self._next()

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Cancel everything and wait for the running job (the window is closing)."""
        self._closing = True
        self.retry.stop()
        self.queue.clear()
        worker = self._worker
        if worker is None:
            return True
        worker.quit()
        return worker.wait(timeout_s)
