"""Parse documents in a separate process with a time limit and a memory limit.

pypdf and friends leave it to the caller to survive hostile files: a file that loops,
crashes the interpreter or eats all memory must cost that one file, never the app or
the batch. One long-lived worker process parses files in order; the caller can submit
the next file before collecting the current one, so parsing overlaps embedding.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from desktop.errors import Cancelled, DocumentError
from desktop.rag.loaders import Limits, load_document
from desktop.rag.types import CancelToken, PageText

PagesFn = Callable[[int, int], None]  # (scanned pages read, scanned pages to read)

# Fault injection for the test suite only. It is inert unless a test sets this variable:
# then a file whose name starts with "sprig-fault-hang" never finishes parsing and one whose
# name starts with "sprig-fault-crash" kills the worker, as a hostile file could.
FAULTS_ENV = "SPRIG_TEST_PARSER_FAULTS"


def _inject_fault(path: str) -> None:
    name = os.path.basename(path)
    if name.startswith("sprig-fault-hang"):
        while True:
            time.sleep(60)
    if name.startswith("sprig-fault-crash"):
        os.abort()


def _exit_with_parent(parent_pid: int) -> None:
    """A parser left behind by a parent that was killed (kill -9) exits within a second."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="sprig-parser-watchdog", daemon=True).start()


def _child_main(conn, memory_bytes: int, parent_pid: int | None = None) -> None:  # in the worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    faults = os.environ.get(FAULTS_ENV) == "1"
    if memory_bytes > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        except (ImportError, ValueError, OSError):
            pass
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        path, limits = request

        def pages_read(done: int, total: int) -> None:  # OCR of scanned pages, page by page
            conn.send(("progress", done, total))

        try:
            if faults:
                _inject_fault(path)
            reply = ("ok", load_document(Path(path), limits, progress=pages_read))
        except DocumentError as exc:
            reply = ("error", exc.code, exc.reason)
        except MemoryError:
            reply = ("error", "too_large", "the file needs too much memory to read")
        except RecursionError:
            reply = ("error", "damaged", "damaged file (nested too deeply to read)")
        except Exception as exc:  # noqa: BLE001 - any parser failure is the file's failure
            reply = ("error", "damaged", f"could not read the file ({type(exc).__name__}: {str(exc)[:120]})")
        try:
            conn.send(reply)
        except (OSError, EOFError):  # the parent is gone (killed): leave quietly
            return


@dataclass
class _Request:
    path: str
    submitted: float


class ParserWorker:
    """A restartable parser process. ``submit`` then ``collect`` in the same order."""

    def __init__(self, limits: Limits | None = None, timeout_s: float = 120.0, memory_mb: int = 2048):
        self.limits = limits or Limits()
        self.timeout_s = timeout_s
        self.memory_bytes = memory_mb * 1024 * 1024
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None
        self._pending: deque[_Request] = deque()
        self._started_current = 0.0

    # -- lifecycle
    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_child_main, args=(child, self.memory_bytes, os.getpid()), daemon=True, name="sprig-parser"
        )
        self._proc.start()
        child.close()
        self._conn = parent

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            if self._proc.is_alive():
                try:
                    self._conn.send(None)
                except OSError:
                    pass
                self._proc.join(1.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(1.0)
        finally:
            if self._conn is not None:
                self._conn.close()
            self._proc = None
            self._conn = None
            self._pending.clear()

    def __enter__(self) -> ParserWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- work
    def submit(self, path: str | os.PathLike) -> None:
        self._ensure()
        if not self._pending:
            self._started_current = time.monotonic()
        self._pending.append(_Request(str(path), time.monotonic()))
        self._conn.send((str(path), self.limits))

    def collect(self, progress: PagesFn | None = None, cancel: CancelToken | None = None) -> list[PageText]:
        """The pages of the oldest submitted file, or DocumentError with the reason.

        While a PDF's scanned pages are OCR'd, ``progress(done, total)`` follows them page by
        page, and each page read gives the file another ``timeout_s`` (a hang still times
        out; a long scan does not). ``cancel`` stops the parser at once: Cancelled is raised
        and what was queued behind is dropped.
        """
        request = self._pending[0]
        deadline = max(self._started_current, request.submitted) + self.timeout_s
        pages_done = None
        while True:
            if cancel is not None and cancel.cancelled:
                if self._proc is not None and self._proc.is_alive():
                    self._proc.kill()  # it only reads: nothing is lost but the page it was on
                self.close()
                raise Cancelled("cancelled")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._restart_after_failure()
                where = f" (OCR stopped after page {pages_done[0]} of {pages_done[1]})" if pages_done else ""
                raise DocumentError(
                    "timeout", f"reading the file took longer than {self.timeout_s:.0f} s{where}"
                )
            try:
                ready = self._conn.poll(min(remaining, 0.25))
            except (OSError, EOFError):
                ready = False
            if ready:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is None:
                    self._restart_after_failure()
                    raise DocumentError("crashed", "the parser crashed on this file")
                if message[0] == "progress":
                    pages_done = (message[1], message[2])
                    deadline = time.monotonic() + self.timeout_s
                    if progress is not None:
                        progress(message[1], message[2])
                    continue
                self._pending.popleft()
                self._started_current = time.monotonic()
                if message[0] == "ok":
                    return message[1]
                raise DocumentError(message[1], message[2])
            if not self._proc.is_alive():
                code = self._proc.exitcode
                self._restart_after_failure()
                if code is not None and code < 0 and -code == signal.SIGKILL:
                    raise DocumentError("too_large", "the file needs too much memory to read")
                raise DocumentError("crashed", f"the parser crashed on this file (exit {code})")

    def parse(self, path: str | os.PathLike, progress: PagesFn | None = None,
              cancel: CancelToken | None = None) -> list[PageText]:
        self.submit(path)
        return self.collect(progress, cancel)

    def _restart_after_failure(self) -> None:
        """Drop the failed request, restart the process and resubmit what was queued behind it."""
        failed = self._pending.popleft()
        rest = list(self._pending)
        del failed
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._pending.clear()
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(2.0)
        if conn is not None:
            conn.close()
        for request in rest:
            self.submit(request.path)
