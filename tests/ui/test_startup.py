"""Launch to first paint: the window shows before torch, chromadb or llama_cpp are imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.conftest import REPO


def test_the_window_paints_before_any_heavy_library_is_imported(tmp_path, sprig_home):
    report = tmp_path / "startup.json"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "desktop", "--data-dir", str(sprig_home), "--startup-report", str(report),
         "--quit-after-paint"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["heavy_modules_loaded"] == []
    since_start = data["seconds_since_process_start"]
    print(f"\nlaunch to first paint: {since_start:.2f} s (process start to paint); whole run {wall:.2f} s")
    assert since_start < 10
    # a first launch made the data folder and its stores, nothing else
    assert (sprig_home / "catalog.sqlite3").exists() and (sprig_home / "chats.sqlite3").exists()
    assert not (sprig_home / "chroma").exists()
