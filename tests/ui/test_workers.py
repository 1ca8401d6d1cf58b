"""The one background-worker pattern: order of signals, quit, errors, and the GUI thread."""

from __future__ import annotations

import threading
import time

import pytest

from desktop.errors import Cancelled, ModelError
from desktop.ui.workers import Worker, await_workers, live_workers


def test_a_generator_job_yields_then_returns_in_order(qtbot):
    def count(n):
        yield from range(n)
        return "done"

    worker = Worker(count, 3)
    values = []
    worker.signals.yielded.connect(values.append)
    signals = [worker.signals.started, worker.signals.yielded, worker.signals.yielded,
               worker.signals.yielded, worker.signals.returned, worker.signals.finished]
    with qtbot.waitSignals(signals, order="strict", timeout=5000):
        worker.start()
    assert values == [0, 1, 2]
    qtbot.waitUntil(lambda: worker not in live_workers(), timeout=2000)


def test_slots_run_on_the_gui_thread_and_the_job_does_not(qtbot):
    gui = threading.get_ident()
    seen = {}

    def job(report):
        seen["job"] = threading.get_ident()
        report("progress")
        return 42

    worker = Worker(job)
    worker.connect(yielded=lambda _v: seen.setdefault("yielded", threading.get_ident()),
                   returned=lambda _v: seen.setdefault("returned", threading.get_ident()))
    with qtbot.waitSignal(worker.signals.finished, timeout=5000):
        worker.start()
    assert seen["job"] != gui
    assert seen["yielded"] == seen["returned"] == gui


def test_quit_stops_a_generator_between_yields_and_it_does_not_return(qtbot):
    stopped = threading.Event()

    def endless():
        try:
            while True:
                time.sleep(0.01)
                yield 1
        finally:
            stopped.set()

    worker = Worker(endless)
    hooks = []
    worker.on_quit(lambda: hooks.append("cancel token"))
    with qtbot.waitSignal(worker.signals.yielded, timeout=5000):
        worker.start()
    with qtbot.waitSignals([worker.signals.aborted, worker.signals.finished], timeout=5000):
        with qtbot.assertNotEmitted(worker.signals.returned, wait=100):
            worker.quit()
    assert stopped.is_set() and hooks == ["cancel token"]


@pytest.mark.parametrize("error, signal", [(ModelError("bad model"), "errored"), (Cancelled("x"), "aborted")])
def test_a_failing_job_reports_the_error_and_cancelling_is_not_one(qtbot, error, signal):
    def fail():
        raise error

    worker = Worker(fail)
    with qtbot.waitSignal(getattr(worker.signals, signal), timeout=5000) as blocker:
        with qtbot.assertNotEmitted(worker.signals.returned, wait=50):
            worker.start()
    if signal == "errored":
        assert blocker.args[0] is error


def test_await_workers_asks_running_jobs_to_stop_and_waits(qtbot):
    def slow():
        for _ in range(1000):
            time.sleep(0.01)
            yield

    workers = [Worker(slow).start() for _ in range(3)]
    qtbot.waitUntil(lambda: all(w.is_running for w in workers), timeout=5000)
    started = time.monotonic()
    assert await_workers(5.0)
    assert time.monotonic() - started < 2.0
    assert not any(w.is_running for w in workers)
    qtbot.waitUntil(lambda: not live_workers(), timeout=2000)


def test_latest_read_reads_once_more_after_a_burst_and_shows_the_latest(qtbot):
    from desktop.ui.workers import LatestRead

    gate = threading.Event()
    calls, shown = [], []
    state = {"value": "a"}

    def read(value):
        calls.append(value)
        gate.wait(5)
        return value.upper()

    reader = LatestRead(read, lambda: (state["value"],), lambda args, result: shown.append((args, result)))
    reader.request()
    for value in "bcd":  # a burst while the first read runs
        state["value"] = value
        reader.request()
    gate.set()
    qtbot.waitUntil(lambda: len(shown) == 2 and reader.worker is None, timeout=5000)
    assert calls == ["a", "d"]
    assert shown == [(("a",), "A"), (("d",), "D")]
