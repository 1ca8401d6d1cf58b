"""Generation threads fitted to the load: llama.cpp's threads wait for each other at every
step, so one that shares a core with another busy process stalls them all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from desktop.models import llm
from desktop.models.llm import busy_cores, threads_for_load


def test_threads_leave_busy_cores_alone():
    cores = os.cpu_count() or 1
    assert threads_for_load(2, 0.0) == min(2, cores)
    assert threads_for_load(cores, cores - 1.0) == 1
    assert threads_for_load(cores, cores + 3.0) == 1  # never fewer than one
    assert threads_for_load(4, 0.1) == min(4, cores)  # noise is not load


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
    import threading

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


def test_an_answer_runs_on_the_threads_the_load_leaves(gemma_model, monkeypatch):
    cores = os.cpu_count() or 1
    monkeypatch.setattr(llm, "busy_cores", lambda *a, **k: cores - 1.0)
    text = "".join(gemma_model.stream([{"role": "user", "content": "The capital of France is"}], 8, 0.0))
    assert gemma_model.threads_used == (1, 1)
    assert text.strip()
    monkeypatch.setattr(llm, "busy_cores", lambda *a, **k: 0.0)
    text = "".join(gemma_model.stream([{"role": "user", "content": "The capital of France is"}], 8, 0.0))
    assert gemma_model.threads_used == (min(gemma_model.n_threads, cores), min(gemma_model.n_threads_batch, cores))
    assert text.strip()
