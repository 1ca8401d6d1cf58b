"""The benchmarks never rot: a tiny run of each, with the real models, must finish and
write valid JSON with the expected keys (seconds, not minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, tmp_path: Path, *extra: str) -> dict:
    results = tmp_path / "results"  # never into the checkout
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SPRIG_HOME=str(tmp_path / "home"),
               SPRIG_BENCH_RESULTS=str(results))
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), "--smoke", *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = script.removesuffix(".py")
    latest = results / f"{name}-smoke-latest.json"
    data = json.loads(latest.read_text(encoding="utf-8"))
    assert data["mode"] == "smoke"
    machine = data["machine"]
    for key in ("cpu", "physical_cores", "logical_cores", "ram_gb", "os", "packages"):
        assert machine.get(key), key
    return data


@pytest.mark.timeout(900)
def test_perf_smoke(tmp_path, eval_root):
    data = run_bench("perf.py", tmp_path)
    for key in ("llm", "ttft", "pdf_extraction", "embedding", "store_writes", "indexing", "retrieval",
                "cold_start", "table", "targets"):
        assert key in data, key
    for llm in data["llm"].values():
        assert llm["decode"]["sprig_tok_s"] > 0 and llm["decode"]["raw_tok_s"] > 0
        assert llm["decode"]["ratio"]["ratio"] > 0 and llm["decode"]["limit_tok_s"] > 0
        assert llm["prefill"]["prompt_tokens"] > 0
    assert data["ttft"]["median"]["ttft_s"] > 0
    load = data["answer_under_load"]
    assert load["adaptive_s"] > 0 and load["fixed_s"] > 0 and load["threads_chosen"]
    assert data["embedding"]["sprig_chunks_s"] > 0 and data["embedding"]["ratio"]["ratio"] > 0
    assert data["store_writes"]["ratio"]["ratio"] > 0
    assert data["indexing"]["pages"] > 0 and data["indexing"]["sprig_pages_s"] > 0
    r = data["retrieval"]["1000"]
    assert r["latency_ms"]["sprig_hybrid"]["p95"] > 0 and 0 <= r["recall_at_5_vs_exact"] <= 1
    first = data["first_answer"]
    assert first["fresh"]["answer_s"] > first["fresh"]["indexed_s"] > 0 and first["warm"]["answer_s"] > 0
    shared = data["shared"]["1000"]
    assert shared["write_chunks_per_s"] > 0 and shared["latency_ms"]["sprig_hybrid"]["p95"] > 0
    assert 0 <= data["shared"]["keyword_recall"]["fts5"]["recall_at_5"] <= 1
    assert data["shared"]["refresh_at_many_ms"]["unchanged_p50"] > 0
    assert "sprig_s" in data["cold_start"] or "error" in data["cold_start"]
    assert data["machine"]["memory_bandwidth_gbs"]["best"] > 0


@pytest.mark.timeout(900)
def test_quality_smoke(tmp_path, eval_root):
    data = run_bench("quality.py", tmp_path, "--calibrate")
    for key in ("squad_retrieval", "calibration", "squad_answers", "embedding_backend"):
        assert key in data, key
    for mode in ("hybrid", "vector"):
        m = data["squad_retrieval"][mode]
        assert 0 <= m["recall_at_1"] <= m["recall_at_5"] <= 1 and 0 <= m["mrr_at_5"] <= 1
    calibration = data["calibration"]
    assert len(calibration["weights"]) == 3 and calibration["report_questions"]
    curve = calibration["curve"]
    assert len(curve) > 5
    rates = [row["false_refusal_answerable"]["value"] for row in curve]
    assert rates == sorted(rates)  # more refusals as the threshold rises
    for row in curve:
        share = row["abstain_unanswerable"]
        assert share["ci95"][0] <= share["value"] <= share["ci95"][1]
    answers = data["squad_answers"]
    assert 0 <= answers["accuracy"]["value"] <= 1 and "abstention_rate" in answers


@pytest.fixture
def eval_root():
    from tests.conftest import eval_path

    return eval_path("squad_v1.1_dev")
