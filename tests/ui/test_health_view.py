"""The search-health badge and its details: kept reports, background checks with progress,
cancel, waiting for the indexing lane (stand-in jobs), and the real check in the window."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from desktop.rag.probes import (
    DocumentHealth,
    HealthProgress,
    HealthReport,
    Outcome,
    Probe,
    cached_report,
)
from desktop.ui import health_view
from desktop.ui.health_view import HealthBadge
from desktop.ui.theme import Colors
from tests.conftest import eval_path


class Lane(QObject):
    """The two signals and two fields of the indexing lane that the badge reads."""

    documents_changed = Signal()
    state_changed = Signal()

    def __init__(self):
        super().__init__()
        self.busy = False
        self.queue: list = []


def a_report(found: int = 18, probes: int = 20) -> HealthReport:
    probe = Probe("/docs/annual-report.pdf", 1, 7, 10, 80, "Net sales rose in every region.",
                  "Net sales rose every")
    missed = Outcome(probe, None, "/docs/annual-report-2022.pdf", 7, "/docs/annual-report-2022.pdf", 7)
    unaskable = Outcome(Probe("/docs/scan.pdf", 2, 3, 0, 40, "Tlie cornpauy", ""), None)
    worst = DocumentHealth("/docs/annual-report.pdf", 4, 2, "duplicates",
                           "duplicates: 2 of 2 missed questions found the same text in annual-report-2022.pdf")
    return HealthReport("default", probes, found, [worst], [missed, unaskable], key="k")


def badge_for(qtbot, lane=None, **kwargs) -> HealthBadge:
    kwargs.setdefault("auto", False)
    badge = HealthBadge(object(), lane or Lane(), "default", **kwargs)
    qtbot.addWidget(badge)
    badge.show()
    return badge


def test_the_kept_report_is_shown_and_its_details_open_on_a_click(qtbot):
    report = a_report()
    badge = badge_for(qtbot, lookup=lambda library, collection: (True, report))
    qtbot.waitUntil(lambda: badge.text() == "Finds 18/20", timeout=5000)
    assert Colors.from_palette().success.name() in badge.styleSheet()  # 90%: the success colour
    assert badge.toolTip().startswith("Sprig finds the right page for 18 of 20 sample questions.")
    assert "annual-report.pdf" in badge.toolTip()

    badge.click()
    dialog = badge.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.heading.text() == "Search health of “default”"
    assert dialog.status.text() == "Sprig finds the right page for 18 of 20 sample questions (90%)."
    details = dialog.details.text()
    assert "<b>annual-report.pdf</b> — 2 of 4 found" in details
    assert "found the same text in annual-report-2022.pdf" in details
    assert "“Net sales rose every”" in details and "found first: annual-report-2022.pdf, page 7" in details
    assert "No question could be made from scan.pdf, page 3" in details
    assert not dialog.bar.isVisible() and not dialog.cancel_button.isVisible()
    assert dialog.check_button.isEnabled()
    badge.shutdown()

    weak = badge_for(qtbot, lookup=lambda library, collection: (True, a_report(found=10)))
    qtbot.waitUntil(lambda: weak.text() == "Finds 10/20", timeout=5000)
    assert Colors.from_palette().error.name() in weak.styleSheet()
    weak.shutdown()


def test_an_empty_collection_has_no_badge_and_an_unchecked_one_offers_a_check(qtbot):
    empty = badge_for(qtbot, lookup=lambda library, collection: (False, None))
    qtbot.wait(200)
    assert not empty.isVisible() and empty.text() == ""
    unchecked = badge_for(qtbot, lookup=lambda library, collection: (True, None))
    qtbot.waitUntil(lambda: unchecked.text() == "Check search", timeout=5000)
    assert unchecked.isVisible()
    empty.shutdown()
    unchecked.shutdown()


def test_an_unchecked_collection_is_checked_in_the_background_with_progress(qtbot, monkeypatch):
    monkeypatch.setattr(health_view, "AUTO_DELAY_MS", 50)
    step = threading.Semaphore(0)
    asked = []

    def check(library, collection, refresh, cancel, report):
        asked.append((collection, refresh))
        for i in range(4):
            step.acquire()  # the test lets each question through
            report(HealthProgress("probe", i, 4, "/docs/a.txt"))
        return HealthReport(collection, 4, 3, key="k")

    kept: list = [None]
    badge = badge_for(qtbot, auto=True, check=check, lookup=lambda library, collection: (True, kept[0]))
    try:
        # running is set on the GUI thread when the job starts; the check runs on its worker
        qtbot.waitUntil(lambda: badge.running and bool(asked), timeout=5000)
        assert asked == [("default", False)]
        dialog = badge.open_details()
        assert dialog.bar.isVisible() and dialog.cancel_button.isVisible()
        step.release(3)
        qtbot.waitUntil(lambda: badge.text() == "Checking… 50%"
                        and dialog.status.text() == "Asking sample question 3 of 4 (a.txt)…", timeout=5000)
        assert Colors.from_palette().muted.name() in badge.styleSheet()
        kept[0] = HealthReport("default", 4, 3, key="k")  # what the check keeps in the catalog
        step.release(1)
        qtbot.waitUntil(lambda: badge.text() == "Finds 3/4", timeout=5000)
        assert not badge.running and not dialog.bar.isVisible()
        assert Colors.from_palette().warning.name() in badge.styleSheet()  # 75%
        qtbot.wait(300)
        assert len(asked) == 1  # a current report is not checked again
    finally:
        step.release(8)  # a failed assertion must not leave the check's worker waiting forever
        badge.shutdown()


def test_cancel_keeps_the_last_result_and_no_check_restarts_on_its_own(qtbot, monkeypatch):
    monkeypatch.setattr(health_view, "AUTO_DELAY_MS", 50)
    runs = []

    def check(library, collection, refresh, cancel, report):
        from desktop.errors import Cancelled

        runs.append(refresh)
        report(HealthProgress("probe", 0, 10, "/docs/a.txt"))
        while not cancel.cancelled:
            threading.Event().wait(0.01)
        raise Cancelled("cancelled")

    badge = badge_for(qtbot, auto=True, check=check, lookup=lambda library, collection: (True, None))
    qtbot.waitUntil(lambda: badge.running, timeout=5000)
    dialog = badge.open_details()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not badge.running, timeout=5000)
    assert badge.text() == "Check search" and badge.report is None
    qtbot.wait(400)
    assert runs == [False]  # the user said no: not again until the collection changes
    # Check again asks anew, even though nothing changed
    dialog.check_button.click()
    qtbot.waitUntil(lambda: len(runs) == 2, timeout=5000)
    assert runs == [False, True]
    assert badge.shutdown(5.0)  # the running check stops and its worker ends


def test_a_check_asked_for_while_indexing_waits_for_the_lane(qtbot):
    lane = Lane()
    lane.busy = True
    runs = []
    kept: list = [None]

    def check(library, collection, refresh, cancel, report):
        runs.append(refresh)
        kept[0] = HealthReport(collection, 2, 2, key="k")  # what the real check keeps in the catalog
        return kept[0]

    badge = badge_for(qtbot, lane, check=check, lookup=lambda library, collection: (True, kept[0]))
    qtbot.waitUntil(lambda: badge.text() == "Check search", timeout=5000)
    badge.start_check(refresh=True)
    assert badge.text() == "Check waiting…" and not runs
    lane.busy = False
    lane.state_changed.emit()
    qtbot.waitUntil(lambda: badge.text() == "Finds 2/2", timeout=5000)
    assert runs == [True]
    badge.shutdown()


def test_a_failed_check_says_so_and_is_not_retried_on_its_own(qtbot, monkeypatch):
    monkeypatch.setattr(health_view, "AUTO_DELAY_MS", 50)
    runs = []

    def check(library, collection, refresh, cancel, report):
        from desktop.errors import StoreError

        runs.append(1)
        raise StoreError("the vector store cannot be read")

    badge = badge_for(qtbot, auto=True, check=check, lookup=lambda library, collection: (True, None))
    qtbot.waitUntil(lambda: badge.text() == "Check failed", timeout=5000)
    assert badge.toolTip() == "The check failed: the vector store cannot be read"
    assert Colors.from_palette().error.name() in badge.styleSheet()
    qtbot.wait(400)
    assert runs == [1]
    badge.shutdown()


# ------------------------------------------------------------------ the real check, in the window
def test_the_window_checks_a_collection_from_its_badge(qtbot, make_window, library, tmp_path):
    text = "\n\n".join(eval_path("squad_v1.1_dev", "derived", "articles", "020_Black_Death.txt")
                       .read_text(encoding="utf-8").split("\n\n")[:5])
    notes = tmp_path / "plague-notes.txt"
    notes.write_text(text, encoding="utf-8")
    assert library.index([notes]).ok
    window = make_window(library=library, startup_jobs=False)
    badge = window.documents.health
    qtbot.waitUntil(lambda: badge.text() == "Check search", timeout=10_000)
    assert badge.isVisibleTo(window)

    dialog = badge.open_details()  # an unchecked collection is checked when its details open
    qtbot.waitUntil(lambda: badge.report is not None and not badge.running, timeout=120_000)
    report = badge.report
    assert report.probes == 4 and report.found >= 3
    assert badge.text() == f"Finds {report.found}/4"
    assert dialog.status.text().startswith(f"Sprig finds the right page for {report.found} of 4 sample questions")
    kept = cached_report(library.catalog, "default", library.embedder.model_id)
    assert kept is not None and kept.found == report.found

    # another collection, empty: no badge; back again: the kept report, not a new check
    window.documents.set_collection("empty")
    qtbot.waitUntil(lambda: not badge.isVisibleTo(window), timeout=5000)
    window.documents.set_collection("default")
    qtbot.waitUntil(lambda: badge.text() == f"Finds {report.found}/4", timeout=5000)
    assert badge.report.cached
