"""Fixtures for the window tests: real components, injected so models load once per session.

Each window gets the test's temp data folder and the session's real embedder (through
the ``library`` fixture). Answers use the real Gemma 270M model wrapped in a real
``AnswerEngine`` over that library. At teardown every window is shut down and no worker
may be left running.
"""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QElapsedTimer, QMimeData, QObject, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop.config import Paths, Settings

SQUAD = ("squad_v1.1_dev", "derived", "articles")
PDF_4_PAGES = ("pdfs", "py-pdf-sample-files", "004-pdflatex-4-pages", "pdflatex-4-pages.pdf")


@pytest.fixture
def paths(sprig_home) -> Paths:
    return Paths(sprig_home)


@pytest.fixture
def test_settings() -> Settings:
    # short answers from few passages keep the tests fast on two cores
    return Settings(auto_load_model=False, passages_per_answer=2, max_answer_tokens=40)


@pytest.fixture
def engine(library, gemma_model, test_settings):
    from desktop.rag.answer import AnswerEngine

    return AnswerEngine(library, gemma_model, passages_per_answer=test_settings.passages_per_answer,
                        abstain_below=test_settings.abstain_below, temperature=0.0,
                        max_answer_tokens=test_settings.max_answer_tokens)


@pytest.fixture
def make_window(qtbot, paths, test_settings, library):
    """Build MainWindow(s) on the test's data folder; all are shut down at teardown
    (before the library they share is closed)."""
    from desktop.ui.window import MainWindow
    from desktop.ui.workers import live_workers

    windows = []

    def make(**kwargs):
        kwargs.setdefault("auto_load", False)
        kwargs.setdefault("settings", test_settings)
        window = MainWindow(paths, **kwargs)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
    qtbot.waitUntil(lambda: not live_workers(), timeout=30_000)


def file_mime(paths) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def drop_files(window, widget, files) -> tuple[bool, bool]:
    """Deliver a drag-enter and a drop carrying file URLs to ``window`` at ``widget``'s centre,
    the way the platform delivers them (to the window, which finds the target widget)."""
    mime = file_mime(files)
    pos = QPointF(widget.mapTo(window, widget.rect().center()))
    handle = window.windowHandle()
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(handle, enter)
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(handle, drop)
    return enter.isAccepted(), drop.isAccepted()


def rows_by_name(window) -> dict:
    return {row.name: row for row in window.documents.model.rows}


class GapMeter(QObject):
    """Measures how long the GUI thread goes without running its event loop.

    A 5 ms timer on the GUI thread records the largest interval between two ticks; any
    time the thread is blocked (by a slot, a paint, a lock) shows up as a long interval.
    """

    def __init__(self, interval_ms: int = 5):
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []

    def start(self) -> None:
        self.clock.start()
        self.last = self.clock.nsecsElapsed()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        self.gaps.append((now - self.last) / 1e6)
        self.last = now

    @property
    def worst_ms(self) -> float:
        return max(self.gaps, default=0.0)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.gaps)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def wait_idle(qtbot, window, timeout_s: float = 180.0) -> None:
    """Until the indexing lane has nothing running or waiting."""
    qtbot.waitUntil(lambda: not window.indexing.busy and not window.indexing.queue, timeout=int(timeout_s * 1000))


def pump(qtbot, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        qtbot.wait(20)
