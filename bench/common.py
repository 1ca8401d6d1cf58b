"""Shared helpers for the benchmarks: the machine's description, timing, summaries, output."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# where results go: bench/results (git-ignored), or SPRIG_BENCH_RESULTS (the tests use a temp folder)
RESULTS = Path(os.environ.get("SPRIG_BENCH_RESULTS") or REPO / "bench" / "results")
# model files (assembled GGUFs, the built embedder) are kept between runs; SPRIG_MODELS shares them
MODELS = Path(os.environ.get("SPRIG_MODELS") or REPO / "bench" / "results" / "cache" / "models")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PACKAGES = ["llama_cpp_python", "sentence-transformers", "torch", "transformers", "onnxruntime",
            "onnx", "chromadb", "pypdf", "PySide6_Essentials", "numpy", "tokenizers"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(extra: dict | None = None) -> dict:
    import importlib.metadata as md

    import psutil

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    info = {
        "cpu": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "virtualised": _hypervisor(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
        "note": "shared VM: other jobs ran on the same cores during the run; "
                "ratios come from interleaved runs, absolute figures are noisy",
    }
    info.update(extra or {})
    return info


def _hypervisor() -> str | None:
    try:
        flags = Path("/proc/cpuinfo").read_text()
        return "yes (hypervisor flag set)" if " hypervisor" in flags else "no"
    except OSError:
        return None


def describe(info: dict) -> str:
    return (f"{info['cpu']}, {info['physical_cores']} cores ({info['logical_cores']} threads), "
            f"{info['ram_gb']} GB RAM, {info['os']}")


def memory_bandwidth_gbs(size_mb: int = 1024, repeats: int = 3) -> dict:
    """Read bandwidth: NumPy sums of a large array, 1 thread and all cores (best of N)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    a.sum()
    nbytes = a.nbytes
    best1 = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a.sum()
        best1 = max(best1, nbytes / (time.perf_counter() - t) / 1e9)
    workers = os.cpu_count() or 1
    parts = np.array_split(a, workers)
    bestn = 0.0
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(repeats):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            bestn = max(bestn, nbytes / (time.perf_counter() - t) / 1e9)
    del a, parts
    return {"one_thread": round(best1, 1), "all_threads": round(bestn, 1),
            "best": round(max(best1, bestn), 1), "method": f"numpy sum over {size_mb} MiB float64, best of {repeats}"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "p25": percentile(values, 0.25),
            "p75": percentile(values, 0.75), "n": len(values)}


def interleave(arms: dict[str, Callable[[], float | None]], pairs: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run the arms alternately (A B, B A, A B, ...) after a warm-up of each; each call returns
    its own measured seconds (or None to time the whole call here)."""
    names = list(arms)
    out: dict[str, list[float]] = {n: [] for n in names}

    def run(name: str) -> float:
        t = time.perf_counter()
        value = arms[name]()
        return value if isinstance(value, float) else time.perf_counter() - t

    for _ in range(warmup):
        for name in names:
            run(name)
    for i in range(pairs):
        order = names if i % 2 == 0 else list(reversed(names))
        for name in order:
            out[name].append(run(name))
    return out


def ratio(raw: list[float], sprig: list[float], seed: int = 0) -> dict:
    """raw time / Sprig time: median of the per-pair ratios, with a bootstrap 95% CI."""
    pairs = [r / s for r, s in zip(raw, sprig, strict=True) if s > 0]
    if not pairs:
        return {"ratio": float("nan")}
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(pairs, k=len(pairs))) for _ in range(2000))
    return {"ratio": round(statistics.median(pairs), 3),
            "ci95": [round(boots[int(0.025 * len(boots))], 3), round(boots[int(0.975 * len(boots)) - 1], 3)],
            "pairs": len(pairs)}


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=_default)
    path.write_text(text, encoding="utf-8")
    (RESULTS / f"{name}-latest.json").write_text(text, encoding="utf-8")
    return path


def _default(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:
        pass
    return str(value)


def print_table(rows: list[list], header: list[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def fmt(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)
