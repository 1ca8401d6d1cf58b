"""Generation threads fitted to the load: llama.cpp's threads wait for each other at every
step, so one that shares a core with another busy process stalls them all."""

from __future__ import annotations

from desktop.cpu import logical_cores
from desktop.models import llm
from desktop.models.llm import threads_for_load


def test_threads_leave_busy_cores_alone():
    cores = logical_cores()
    assert threads_for_load(2, 0.0) == min(2, cores)
    assert threads_for_load(cores, cores - 1.0) == 1
    assert threads_for_load(cores, cores + 3.0) == 1  # never fewer than one
    assert threads_for_load(4, 0.1) == min(4, cores)  # noise is not load


def test_an_answer_runs_on_the_threads_the_load_leaves(gemma_model, monkeypatch):
    cores = logical_cores()
    monkeypatch.setattr(llm, "busy_cores", lambda *a, **k: cores - 1.0)
    text = "".join(gemma_model.stream([{"role": "user", "content": "The capital of France is"}], 8, 0.0))
    assert gemma_model.threads_used == (1, 1)
    assert text.strip()
    monkeypatch.setattr(llm, "busy_cores", lambda *a, **k: 0.0)
    text = "".join(gemma_model.stream([{"role": "user", "content": "The capital of France is"}], 8, 0.0))
    assert gemma_model.threads_used == (min(gemma_model.n_threads, cores), min(gemma_model.n_threads_batch, cores))
    assert text.strip()
