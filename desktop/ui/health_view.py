"""The search-health badge of a collection and its details (``desktop.rag.probes`` in the window).

The badge sits in the documents panel's header and follows the panel's collection. It
shows the kept report ("Finds 19/20", in the palette's success, warning or error colour);
when the collection changed since its last check (or never had one) it checks it in the
background once the indexing lane has been idle for a while, with the progress on the badge
("Checking… 40%"). A click opens the details: the figure, the documents that do worst with
the reason their text suggests, the questions that were missed, Check again and Cancel.

Every catalog read and every check runs on a worker (``desktop.ui.workers``); the badge
only shows what they return.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.display import display_name
from desktop.rag.probes import TOP_K, HealthProgress, HealthReport
from desktop.rag.types import CancelToken
from desktop.ui.errors import user_message
from desktop.ui.theme import Colors
from desktop.ui.workers import LatestRead, Worker

AUTO_DELAY_MS = 10_000  # the lane idle this long: an unchecked collection is checked
GOOD = 0.9  # found shares for the success and warning colours; below: the error colour
FAIR = 0.7
MISSED_SHOWN = 30


def look_up(library, collection: str) -> tuple[bool, HealthReport | None]:
    """(the collection has indexed documents, its kept report if still current); on a worker."""
    from desktop.rag.probes import cached_report

    has_documents = bool(library.catalog.documents(collection, status="indexed"))
    return has_documents, cached_report(library.catalog, collection, library.embedder.model_id)


def run_check(library, collection: str, refresh: bool, cancel: CancelToken, report) -> HealthReport:
    """Ask the collection its sample questions; progress goes to ``report``; on a worker."""
    from desktop.rag.probes import check_collection

    return check_collection(library, collection, progress=report, cancel=cancel, refresh=refresh)


def share_text(report: HealthReport) -> str:
    return f"{report.found / report.probes:.0%}" if report.probes else "–"


class HealthBadge(QToolButton):
    """See the module docstring. ``check`` and ``lookup`` are the two jobs (replaceable in tests);
    ``auto`` False: a check runs only when asked for (the details' Check again)."""

    changed = Signal()  # report, progress or state: the details view follows
    checked = Signal(object)  # a finished check's HealthReport (None when cancelled or failed)

    def __init__(self, library, indexing, collection: str = "default", parent=None, *, auto: bool = True,
                 check=run_check, lookup=look_up):
        super().__init__(parent)
        self.library = library
        self.indexing = indexing
        self.collection = collection
        self.auto = auto
        self._check = check
        self._lookup = lookup
        self.report: HealthReport | None = None
        self.has_documents = False
        self.progress: HealthProgress | None = None
        self.error = ""
        self.worker: Worker | None = None
        self._cancel: CancelToken | None = None
        self._reader = LatestRead(self._lookup, lambda: (self.library, self.collection),
                                  lambda args, result: self._on_looked_up(args[1], *result), name="read-health")
        self._closed = False
        self._wanted = False  # a check was asked for while the lane was busy
        self._declined = False  # the user cancelled: no automatic check until the collection changes
        self.dialog: HealthDialog | None = None
        self.setObjectName("healthBadge")
        self.setAutoRaise(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.clicked.connect(self.open_details)
        self._auto_timer = QTimer(self, singleShot=True, interval=AUTO_DELAY_MS)
        self._auto_timer.timeout.connect(self._auto_check)
        indexing.documents_changed.connect(self._on_documents_changed)
        indexing.state_changed.connect(self._on_lane)
        self._show()
        self.refresh()

    # ------------------------------------------------------------ reading the kept report
    def set_collection(self, name: str) -> None:
        if name == self.collection:
            return
        self.cancel_check()
        self.collection = name
        self.report = None
        self.has_documents = False
        self.error = ""
        self._declined = False
        self._show()
        self.refresh()

    def _on_documents_changed(self) -> None:
        self._declined = False
        self.refresh()

    def refresh(self) -> None:
        """Read the collection's kept report on a worker (the catalog may have changed)."""
        if not self._closed:
            self._reader.request()

    def _on_looked_up(self, collection: str, has_documents: bool, report: HealthReport | None) -> None:
        if self._closed or collection != self.collection:
            return
        self.has_documents = has_documents
        if self.worker is None:
            self.report = report
        self._show()
        self._arm()

    # ------------------------------------------------------------ checking
    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def needs_check(self) -> bool:
        return self.has_documents and self.report is None

    def _lane_idle(self) -> bool:
        return not self.indexing.busy and not self.indexing.queue

    def _arm(self) -> None:
        """Check later if the collection needs it and Sprig is idle."""
        if self._closed or self.running:
            return
        if (self.auto and self.needs_check and not self._declined or self._wanted) and self._lane_idle():
            if self._wanted:
                self.start_check(refresh=True)
            elif not self._auto_timer.isActive():
                self._auto_timer.start()
        else:
            self._auto_timer.stop()

    def _on_lane(self) -> None:
        if not self._lane_idle():
            self._auto_timer.stop()
        else:
            self._arm()

    def _auto_check(self) -> None:
        if self.auto and self.needs_check and not self._declined and self._lane_idle() and not self.running:
            self.start_check()

    def start_check(self, refresh: bool = False) -> None:
        """Check the collection now (``refresh``: even if its kept report is current). While the
        lane indexes, the check waits for it (the answer would be out of date at once)."""
        if self._closed or self.running:
            return
        if not self._lane_idle():
            self._wanted = True
            self._show()
            return
        self._wanted = False
        self._auto_timer.stop()
        self.error = ""
        self.progress = HealthProgress("read")
        self._cancel = CancelToken()
        collection = self.collection
        worker = Worker(self._check, self.library, collection, refresh, self._cancel, name="health-check")
        worker.on_quit(self._cancel.cancel)
        worker.connect(yielded=self._on_progress, returned=lambda r, c=collection: self._on_report(c, r),
                       errored=self._on_error, aborted=self._on_aborted, finished=self._on_finished)
        self.worker = worker
        worker.start()
        self._show()

    def cancel_check(self) -> None:
        """Stop the check (the kept report, if any, stays)."""
        self._wanted = False
        if self.worker is not None:
            self._declined = True
            self.worker.quit()
        self._show()

    def _on_progress(self, p: HealthProgress) -> None:
        if isinstance(p, HealthProgress) and self.worker is not None:
            self.progress = p
            self._show()

    def _on_report(self, collection: str, report: HealthReport) -> None:
        if collection == self.collection:
            self.report = report
            self.has_documents = self.has_documents or bool(report.probes)
        self.checked.emit(report)

    def _on_error(self, exc: BaseException) -> None:
        self.error = f"The check failed: {user_message(exc)}"
        self._declined = True  # not again on its own until the collection changes
        self.checked.emit(None)

    def _on_aborted(self) -> None:
        self.checked.emit(None)

    def _on_finished(self) -> None:
        self.worker = None
        self._cancel = None
        self.progress = None
        self._show()
        if not self._closed:
            self.refresh()  # the collection may have changed while it was asked
            if self._wanted:
                self._arm()

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """The window is closing: stop the check and wait for its worker (before the library closes)."""
        self._closed = True
        self._auto_timer.stop()
        done = True
        for worker in (self.worker, self._reader.worker):
            if worker is not None:
                worker.quit()
                done = worker.wait(timeout_s) and done
        if self.dialog is not None:
            self.dialog.close()
        return done

    # ------------------------------------------------------------ showing
    @staticmethod
    def colors() -> Colors:
        return Colors.from_palette()  # the application's: the badge's own carries its style sheet

    def _show(self) -> None:
        report = self.report
        colour = None
        c = self.colors()
        if self.running:
            fraction = self.progress.fraction if self.progress else 0.0
            text = f"Checking… {fraction:.0%}"
            tip = "Sprig is asking this collection sample questions (click for details)"
            colour = c.muted
        elif self._wanted:
            text, tip, colour = "Check waiting…", "The check starts when indexing is done", c.muted
        elif report is not None and report.probes:
            text = f"Finds {report.found}/{report.probes}"
            share = report.found / report.probes
            colour = c.success if share >= GOOD else c.warning if share >= FAIR else c.error
            worst = report.worst
            tip = report.message + (f"\nDoes worst: {display_name(worst[0].path)} ({worst[0].reason})" if worst else "")
            tip += "\nClick for details"
        elif self.error:
            text, tip, colour = "Check failed", self.error, c.error
        elif self.has_documents:
            text = "Check search"
            tip = "See how well Sprig finds things in this collection: it asks itself sample questions"
            colour = c.muted
        else:
            text, tip = "", ""
        self.setVisible(bool(text))
        self.setText(text)
        self.setToolTip(tip)
        sheet = f"QToolButton#healthBadge {{ color: {colour.name()}; }}" if colour is not None else ""
        if sheet != self.styleSheet():  # the same sheet again would re-polish for nothing
            self.setStyleSheet(sheet)
        self.changed.emit()

    def event(self, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            QTimer.singleShot(0, self._show)  # a theme switch: the colours follow
        return super().event(event)

    def open_details(self) -> HealthDialog:
        if self.dialog is None:
            self.dialog = HealthDialog(self, self.window())
        self.dialog.show()
        self.dialog.raise_()
        if not self.running and self.needs_check:
            self.start_check()
        return self.dialog


class HealthDialog(QDialog):
    """The details of a badge's collection: the figure, the worst documents, the missed questions."""

    def __init__(self, badge: HealthBadge, parent=None):
        super().__init__(parent)
        self.badge = badge
        self.setWindowTitle("Search health")
        self.resize(620, 560)
        self.heading = QLabel()
        self.heading.setObjectName("chatTitle")
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.explain = QLabel(
            "Sprig made sample questions from passages of your documents and searched for each one as it "
            f"does for a chat question. A question counts as found when its page is among the first {TOP_K} "
            "passages. The check runs again when the collection changes.")
        self.explain.setWordWrap(True)
        self.explain.setObjectName("hint")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(10)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        column = QWidget()
        inner = QVBoxLayout(column)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.details)
        inner.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(column)

        self.buttons = QDialogButtonBox()
        self.check_button = QPushButton("Check again")
        self.check_button.setToolTip("Ask the sample questions again now")
        self.check_button.clicked.connect(lambda: badge.start_check(refresh=True))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the check (the last result stays)")
        self.cancel_button.clicked.connect(badge.cancel_check)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        self.buttons.addButton(self.check_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.AcceptRole)

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.explain)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.buttons)
        badge.changed.connect(self.update_view)
        self.update_view()

    def update_view(self) -> None:
        badge = self.badge
        report = badge.report
        self.heading.setText(f"Search health of “{badge.collection}”")
        self.bar.setVisible(badge.running)
        self.cancel_button.setVisible(badge.running or badge._wanted)
        self.check_button.setEnabled(not badge.running and badge.has_documents)
        if badge.running:
            p = badge.progress
            self.bar.setValue(int((p.fraction if p else 0.0) * 1000))
            if p is None or p.stage == "read":
                self.status.setText("Reading the collection's passages…")
            else:
                self.status.setText(f"Asking sample question {p.done + 1} of {p.total} ({display_name(p.path)})…")
        elif badge._wanted:
            self.status.setText("The check starts when indexing is done.")
        elif badge.error:
            self.status.setText(badge.error)
        elif report is not None:
            share = f" ({share_text(report)})" if report.probes else ""
            self.status.setText(report.message[:-1] + share + "." if report.probes else report.message)
        elif badge.has_documents:
            self.status.setText("Not checked yet.")
        else:
            self.status.setText("No indexed documents in this collection yet.")
        self.details.setText(self.details_html(report) if report is not None else "")

    @staticmethod
    def details_html(report: HealthReport) -> str:
        parts = []
        worst = report.worst
        if worst:
            parts.append("<p><b>Documents that do worst</b></p><ul>")
            for d in worst:
                parts.append(f"<li><b>{html.escape(display_name(d.path))}</b> — {d.found} of {d.probes} found"
                             f"<br><small>{html.escape(d.reason)}</small></li>")
            parts.append("</ul>")
        elif report.probes:
            parts.append("<p>Every document's sample questions found their page.</p>")
        missed = [o for o in report.outcomes if not o.found]
        if missed:
            parts.append("<p><b>Questions whose page was not found</b></p><ul>")
            for o in missed[:MISSED_SHOWN]:
                where = display_name(o.probe.path) + (f", page {o.probe.page}" if o.probe.page else "")
                if o.probe.query:
                    first = (display_name(o.top_path) + (f", page {o.top_page}" if o.top_page else "")
                             if o.top_path else "nothing")
                    parts.append(f"<li>“{html.escape(o.probe.query)}” <small>({html.escape(where)}; "
                                 f"found first: {html.escape(first)})</small></li>")
                else:
                    parts.append(f"<li><small>No question could be made from {html.escape(where)}: "
                                 "no sentence of dictionary words</small></li>")
            if len(missed) > MISSED_SHOWN:
                parts.append(f"<li><small>… and {len(missed) - MISSED_SHOWN} more</small></li>")
            parts.append("</ul>")
        return "".join(parts)
