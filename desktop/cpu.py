"""The cores this process may run on, and how busy other processes keep them.

A process can be held to some of the machine's cores (``taskset``, a container's cpuset, a
job scheduler). Thread counts follow those cores, not ``os.cpu_count()``: llama.cpp's and
ONNX Runtime's threads wait for each other at every step, so two threads sharing one core
run far slower than one.
"""

from __future__ import annotations

import os
import time


def allowed_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        try:
            cpus = sorted(os.sched_getaffinity(0))
            if cpus:
                return cpus
        except OSError:
            pass
    return list(range(os.cpu_count() or 1))


def logical_cores() -> int:
    return len(allowed_cpus())


def physical_cores() -> int:
    """Physical cores among the allowed CPUs (the machine's share when SMT pairs them)."""
    logical = logical_cores()
    try:
        import psutil

        machine_logical = psutil.cpu_count(logical=True) or logical
        machine_physical = psutil.cpu_count(logical=False) or machine_logical
    except Exception:  # noqa: BLE001 - psutil missing or failing: count logical CPUs
        return logical
    return max(1, min(logical, round(logical * machine_physical / machine_logical)))


def busy_cores(window_s: float = 0.05) -> float:
    """How many of the allowed cores *other* processes keep busy right now (sampled briefly).

    This process's own threads are left out: ONNX Runtime's and llama.cpp's idle threads spin
    for a moment after each run, and counting them made an answer right after the evidence
    step run on one thread on an idle machine. Work on cores this process may not use does
    not count.
    """
    try:
        import psutil

        cpus = allowed_cpus()
        me = psutil.Process()
        system0, own0 = psutil.cpu_times(percpu=True), me.cpu_times()
        time.sleep(window_s)
        system1, own1 = psutil.cpu_times(percpu=True), me.cpu_times()
    except Exception:  # noqa: BLE001 - no measure: assume an idle machine
        return 0.0
    cpus = [c for c in cpus if c < min(len(system0), len(system1))] or list(range(len(system1)))
    idle = [f for f in ("idle", "iowait") if hasattr(system0[0], f)]
    total = sum(sum(system1[c]) - sum(system0[c]) for c in cpus)
    free = sum(getattr(system1[c], f) - getattr(system0[c], f) for c in cpus for f in idle)
    own = (own1.user + own1.system) - (own0.user + own0.system)
    elapsed = total / len(cpus) or window_s
    return max(0.0, (total - free - own) / elapsed)
