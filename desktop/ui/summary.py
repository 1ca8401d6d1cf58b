"""The summary window: a whole document (or collection) read by the model, its points
appearing as they are made, each with the pages it came from as links to the source viewer.

The work is ``desktop.rag.summarize`` on a worker; this window shows its progress, stops it
(between two tokens) and never blocks the GUI thread. It waits for the model if it is not
loaded yet, as a question does.
"""

from __future__ import annotations

import html
import threading
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop.display import display_name
from desktop.rag.summarize import Point, Summary, SummaryProgress
from desktop.ui.errors import user_message
from desktop.ui.workers import Worker


def summary_job(catalog, model, path: str | None, collection: str, task: str,
                stop: threading.Event, report):
    """Runs on a worker: every point and every progress step goes to ``report``."""
    from desktop.rag.summarize import summarize

    job = summarize(catalog, model, path, collection, task=task, progress=report, should_stop=stop.is_set)
    for point in job:
        report(point)
    return job.result


def citation_label(point: Point, one_file: bool) -> str:
    return ", ".join(
        (f"page {c.page}" if one_file else c.location) if c.page is not None else display_name(c.path)
        for c in point.citations)


class PointWidget(QFrame):
    """One point: its text, then its pages as links (a click opens the page in the viewer)."""

    source_clicked = Signal(object)  # the Source

    def __init__(self, point: Point, one_file: bool, parent=None):
        super().__init__(parent)
        self.point = point
        self.setObjectName("summaryPoint")
        links = " · ".join(
            f'<a href="{i}">{html.escape(f"page {c.page}" if one_file and c.page else c.location)}</a>'
            for i, c in enumerate(point.citations))
        self.label = QLabel(f"• {html.escape(point.text)}<br><small>{links}</small>")
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.label.setOpenExternalLinks(False)
        self.label.linkActivated.connect(self._on_link)
        self.label.setToolTip("\n\n".join(f"{c.location}: “{' '.join(c.text.split())[:200]}”"
                                          for c in point.citations))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.label)

    def _on_link(self, href: str) -> None:
        try:
            citation = self.point.citations[int(href)]
        except (ValueError, IndexError):
            return
        self.source_clicked.emit(citation.as_source())

    def open_citation(self, index: int) -> None:
        """What a click on the ``index``-th page link does."""
        self.label.linkActivated.emit(str(index))


class SummaryDialog(QDialog):
    """Summarize one document (``path``) or the whole ``collection``; see the module docstring."""

    source_clicked = Signal(object)  # the Source
    summary_done = Signal(object)  # the Summary (partial when stopped), or None after a failure

    def __init__(self, catalog, engine, path: str | None, collection: str, task: str = "", parent=None):
        super().__init__(parent)
        self.catalog = catalog
        self.engine = engine
        self.path = path
        self.collection = collection
        self.task = task
        self.points: list[Point] = []
        self.point_widgets: list[PointWidget] = []
        self.result: Summary | None = None
        self.error = ""
        self.worker: Worker | None = None
        self._stop = threading.Event()
        self._waiting = False
        self._started_at = 0.0
        self.running = False

        subject = display_name(path) if path else f"the collection “{collection}”"
        title = f"“{task}” in {subject}" if task else f"Summary of {subject}"
        self.setWindowTitle(title)
        self.resize(600, 640)
        self.heading = QLabel(title)
        self.heading.setObjectName("chatTitle")
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.status = QLabel("Starting…")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(10)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.PlainText)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_label.hide()
        self.points_title = QLabel("What was found, each with the pages it came from" if task
                                   else "Points, each with the pages it came from")
        self.points_title.setObjectName("sourcesTitle")
        self.points_title.hide()

        self.column_widget = QWidget()
        self.column = QVBoxLayout(self.column_widget)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.column.setSpacing(6)
        self.column.addWidget(self.summary_label)
        self.column.addWidget(self.points_title)
        self.column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.column_widget)

        self.buttons = QDialogButtonBox()
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop reading (the points made so far stay)")
        self.stop_button.clicked.connect(self.stop)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the summary and its points, with their pages")
        self.copy_button.clicked.connect(self.copy)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        self.buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.stop_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.AcceptRole)

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.buttons)
        self._update_buttons()

    # ------------------------------------------------------------ running
    def start(self) -> None:
        """Summarize with the chat model; load it first if it is not loaded yet."""
        if self.running or self.worker is not None:
            return
        self.running = True
        self._started_at = time.monotonic()
        self._update_buttons()
        if self.engine.engine is not None:
            self._run()
            return
        self._waiting = True
        self.engine.ready.connect(self._on_engine_ready)
        self.engine.failed.connect(self._on_engine_failed)
        self.engine.state_changed.connect(self._on_engine_state)
        self.engine.load()
        self.status.setText(f"Waiting for the model — {self.engine.message}")

    def _stop_waiting(self) -> None:
        if self._waiting:
            self._waiting = False
            self.engine.ready.disconnect(self._on_engine_ready)
            self.engine.failed.disconnect(self._on_engine_failed)
            self.engine.state_changed.disconnect(self._on_engine_state)

    def _on_engine_state(self, _state: str, message: str) -> None:
        self.status.setText(f"Waiting for the model — {message}")

    def _on_engine_ready(self, _engine) -> None:
        self._stop_waiting()
        if self.running and not self._stop.is_set():
            self._run()

    def _on_engine_failed(self, message: str) -> None:
        self._stop_waiting()
        self._fail(f"The model could not be loaded: {message}")

    def _run(self) -> None:
        model = self.engine.engine.model
        self.status.setText("Reading…")
        worker = Worker(summary_job, self.catalog, model, self.path, self.collection, self.task, self._stop,
                        name="summarize")
        worker.on_quit(self._stop.set)
        worker.connect(yielded=self._on_yielded, returned=self._on_done, errored=self._on_error,
                       aborted=lambda: self._on_done(None), finished=self._on_finished)
        self.worker = worker
        self.engine.state_changed.connect(self._on_model_changed)
        worker.start()

    def _on_yielded(self, value) -> None:
        if isinstance(value, Point):
            self._add_point(value)
        elif isinstance(value, SummaryProgress):
            self._show_progress(value)

    def _add_point(self, point: Point) -> None:
        self.points.append(point)
        widget = PointWidget(point, self.path is not None)
        widget.source_clicked.connect(self.source_clicked)
        self.column.insertWidget(self.column.count() - 1, widget)
        self.point_widgets.append(widget)
        self.points_title.show()

    def _show_progress(self, p: SummaryProgress) -> None:
        if self._stop.is_set():
            return
        self.bar.setValue(int(p.fraction * 1000))
        count = f"{len(self.points)} point{'s' if len(self.points) != 1 else ''} so far"
        if p.stage == "map":
            self.status.setText(f"Reading part {p.done + 1} of {p.total} · {count}")
        elif p.stage == "reduce":
            self.status.setText(f"Summing up {len(self.points)} points…")

    def _on_done(self, result: Summary | None) -> None:
        self.running = False
        self.result = result
        if result is not None and result.summary:
            self.summary_label.setText(result.summary)
            self.summary_label.show()
        seconds = time.monotonic() - self._started_at
        took = f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
        n = len(self.points)
        points = f"{n} point{'s' if n != 1 else ''}"
        if result is None or result.stopped or self._stop.is_set():
            read = f" after {result.sections_done} of {result.sections} parts" if result else ""
            self.status.setText(f"Stopped{read} · {points}")
        elif not n:
            self.status.setText("No point could be made: every point the model wrote failed the checks.")
        else:
            pages = f" from {result.pages} page{'s' if result.pages != 1 else ''}" if result.pages else ""
            self.status.setText(f"Done · {points}{pages} in {took}")
            self.bar.setValue(1000)
        self._update_buttons()
        self.summary_done.emit(result)

    def _on_error(self, exc: BaseException) -> None:
        self._fail(user_message(exc))

    def _fail(self, message: str) -> None:
        self.running = False
        self.error = message
        self.status.setText(message[:1].upper() + message[1:])
        self._update_buttons()
        self.summary_done.emit(None)

    def _on_model_changed(self, state: str, _message: str) -> None:
        if state != "ready" and self.running:  # the settings changed the model: this one goes away
            self.stop()

    def _on_finished(self) -> None:
        self.worker = None
        self.engine.state_changed.disconnect(self._on_model_changed)

    def _update_buttons(self) -> None:
        self.stop_button.setVisible(self.running)
        self.stop_button.setEnabled(self.running and not self._stop.is_set())
        self.copy_button.setEnabled(bool(self.points))

    # ------------------------------------------------------------ actions
    def stop(self) -> None:
        """Stop between two tokens (a prompt being read finishes first); points made stay."""
        if not self.running:
            return
        self._stop.set()
        self.status.setText("Stopping…")
        self._update_buttons()
        if self.worker is None:  # still waiting for the model
            self._stop_waiting()
            self._on_done(None)

    def plain_text(self) -> str:
        one_file = self.path is not None
        lines = [self.heading.text(), ""]
        if self.result is not None and self.result.summary:
            lines += [self.result.summary, ""]
        lines += [f"- {p.text} ({citation_label(p, one_file)})" for p in self.points]
        return "\n".join(lines) + "\n"

    def copy(self) -> None:
        QApplication.clipboard().setText(self.plain_text())

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """The window is closing: stop and wait for the worker (before the model is closed)."""
        self._stop.set()
        self._stop_waiting()
        worker = self.worker
        return worker.wait(timeout_s) if worker is not None else True

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.stop()
        super().closeEvent(event)
