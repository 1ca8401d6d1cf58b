"""The cores this process may run on, and how busy other processes keep them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from desktop.cpu import allowed_cpus, busy_cores, logical_cores, physical_cores


@pytest.fixture
def hog():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_busy_process_is_seen(hog):
    assert max(busy_cores(0.3) for _ in range(3)) >= 0.7


def test_this_process_own_busy_threads_are_not_load(hog):
    """ONNX Runtime's and llama.cpp's threads spin after each run: that is not other work."""
    other = min(busy_cores(0.3) for _ in range(3))  # another process keeps a core busy
    hog.kill()
    hog.wait()
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)  # now a thread of this process does
    spinner.start()
    try:
        own = min(busy_cores(0.3) for _ in range(3))
    finally:
        stop.set()
        spinner.join()
    assert other >= 0.7
    assert own <= other - 0.5


def test_counts_follow_the_cpus_this_process_may_use():
    assert 1 <= physical_cores() <= logical_cores() == len(allowed_cpus()) <= (os.cpu_count() or 1)


CHILD = """
import json, os
os.sched_setaffinity(0, {{{cpu}}})
from desktop.cpu import logical_cores, physical_cores
from desktop.models.llm import llm_threads
from desktop.rag.embeddings import embedding_threads
print(json.dumps([logical_cores(), physical_cores(), llm_threads(), embedding_threads()]))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_a_process_held_to_one_core_runs_one_thread_on_it():
    out = subprocess.run([sys.executable, "-c", CHILD.format(cpu=max(allowed_cpus()))],
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, 1, [1, 1], 1]


def test_work_on_cores_this_process_may_not_use_is_not_load(monkeypatch):
    """Four CPUs; this process may use 0 and 1; in the sampled window CPU 1 was busy half the
    time and CPUs 2 and 3 all the time: 0.5 of a core is busy."""
    import psutil

    from desktop import cpu

    class Times(tuple):
        _fields = ("user", "system", "idle", "iowait")

        def __new__(cls, busy, idle):
            return super().__new__(cls, (busy, 0.0, idle, 0.0))

        user = property(lambda self: self[0])
        system = property(lambda self: self[1])
        idle = property(lambda self: self[2])
        iowait = property(lambda self: self[3])

    samples = iter([[Times(0, 0)] * 4,
                    [Times(0.0, 1.0), Times(0.5, 0.5), Times(1.0, 0.0), Times(1.0, 0.0)]])
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: next(samples))
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: [0, 1])
    assert busy_cores(0.0) == pytest.approx(0.5, abs=0.05)  # this process's own time is ~0
