"""The one background-worker pattern: model loading, indexing, answering and file reads.

A job is a plain function or a generator run on a thread of a QThreadPool (the shape of
superqt's ``create_worker``). It reports through a ``WorkerSignals`` object that lives on the
GUI thread, so every connected slot runs on the GUI thread: Qt queues each call across
threads. A job never touches a widget; it returns data and the slots update the views.

Signals, in order: ``started``; ``yielded(value)`` for every value a generator yields or the
function passes to its ``report`` argument; then exactly one of ``returned(value)``,
``errored(exception)`` or ``aborted``; last ``finished``.

``quit()`` asks a job to stop. A generator is not resumed after its current ``yield``, and the
callbacks registered with ``on_quit`` run at once, so a blocking core call can stop
cooperatively too (a ``CancelToken.cancel``, an ``AnswerStream.stop``). A job that raises
``Cancelled`` ends with ``aborted``, never with an error: cancelling is a normal outcome.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

MAX_THREADS = 6  # a model load, an indexing job, an answer and a few file reads at once


class WorkerSignals(QObject):
    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()


_pool: QThreadPool | None = None


def pool() -> QThreadPool:
    """The app's thread pool (separate from Qt's global one, which has one thread per core)."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(MAX_THREADS)
        _pool.setExpiryTimeout(30_000)
    return _pool


class Worker(QRunnable):
    """Run ``func(*args, **kwargs)`` on the pool. See the module docstring for the contract.

    If ``func`` has a parameter named ``report``, it receives a callable that emits
    ``yielded`` (for progress from plain functions that take a callback).
    """

    _live: ClassVar[set[Worker]] = set()
    _live_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, func: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any):
        super().__init__()
        self.setAutoDelete(False)  # Python owns the object; _live keeps it until `finished`
        self.signals = WorkerSignals()
        self.name = name or getattr(func, "__name__", "job")
        self._func = func
        self._args = args
        self._kwargs = kwargs
        try:
            if "report" in inspect.signature(func).parameters:
                self._kwargs.setdefault("report", self.report)
        except (TypeError, ValueError):
            pass
        self._abort = threading.Event()
        self._done = threading.Event()
        self._on_quit: list[Callable[[], None]] = []
        self._started = False

    # ------------------------------------------------------------ wiring
    def connect(self, **slots: Callable[..., Any]) -> Worker:
        """``worker.connect(returned=..., errored=...)``; returns the worker for chaining."""
        for signal_name, slot in slots.items():
            getattr(self.signals, signal_name).connect(slot)
        return self

    def on_quit(self, callback: Callable[[], None]) -> Worker:
        self._on_quit.append(callback)
        return self

    def start(self) -> Worker:
        if self._started:
            raise RuntimeError(f"worker {self.name!r} already started")
        self._started = True
        with Worker._live_lock:
            Worker._live.add(self)
        # forget the worker on the GUI thread, after every other `finished` slot has run
        self.signals.finished.connect(self._forget)
        pool().start(self)
        return self

    def _forget(self) -> None:
        with Worker._live_lock:
            Worker._live.discard(self)

    # ------------------------------------------------------------ control
    def quit(self) -> None:
        """Ask the job to stop (cooperative); safe to call more than once."""
        if self._abort.is_set():
            return
        self._abort.set()
        for callback in self._on_quit:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a failing cancel hook must not break quitting
                log.exception("quit hook of %s failed", self.name)

    @property
    def abort_requested(self) -> bool:
        return self._abort.is_set()

    @property
    def is_running(self) -> bool:
        return self._started and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job's function has returned (not until the slots have run)."""
        return self._done.wait(timeout)

    def report(self, value: Any) -> None:
        """Emit ``yielded(value)``; callable from the job's thread."""
        self.signals.yielded.emit(value)

    # ------------------------------------------------------------ the job's thread
    def run(self) -> None:
        from desktop.errors import Cancelled

        signals = self.signals
        signals.started.emit()
        try:
            result = self._func(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                result = self._drive(result)
        except Cancelled:
            self._done.set()
            signals.aborted.emit()
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, which shows a plain message
            log.error("job %s failed", self.name, exc_info=exc)
            self._done.set()
            signals.errored.emit(exc)
        else:
            self._done.set()
            if self._abort.is_set():
                signals.aborted.emit()
            else:
                signals.returned.emit(result)
        finally:
            self._done.set()
            signals.finished.emit()

    def _drive(self, generator):
        while True:
            if self._abort.is_set():
                generator.close()
                return None
            try:
                value = next(generator)
            except StopIteration as stop:
                return stop.value
            self.signals.yielded.emit(value)


class LatestRead:
    """One read on a worker at a time, the latest one shown.

    ``request()`` reads ``func(*args())`` on a worker and hands ``(args, result)`` to
    ``show``; asked again while a read runs, it reads once more when that one ends (with the
    arguments of that moment), so a burst of changes costs two reads, never a queue of them.
    """

    def __init__(self, func: Callable[..., Any], args: Callable[[], tuple], show: Callable[[tuple, Any], None],
                 name: str = ""):
        self._func = func
        self._args = args
        self._show = show
        self._name = name
        self.worker: Worker | None = None
        self._again = False

    def request(self) -> None:
        if self.worker is not None:
            self._again = True
            return
        args = self._args()
        self.worker = Worker(self._func, *args, name=self._name)
        self.worker.connect(returned=lambda result: self._show(args, result), finished=self._done)
        self.worker.start()

    def _done(self) -> None:
        self.worker = None
        if self._again:
            self._again = False
            self.request()


def create_worker(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
    return Worker(func, *args, **kwargs)


def live_workers() -> list[Worker]:
    with Worker._live_lock:
        return [w for w in Worker._live if w.is_running]


def await_workers(timeout_s: float = 10.0) -> bool:
    """Ask every running job to stop and wait for the pool; True if all ended in time."""
    for worker in live_workers():
        worker.quit()
    return pool().waitForDone(int(timeout_s * 1000))
