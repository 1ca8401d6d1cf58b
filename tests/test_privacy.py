"""Privacy and data safety: no telemetry from native code, nothing written outside the data
folder, special files refused, settings that never destroy themselves, safe file names."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


def _clean_env(home: Path, data: Path) -> dict:
    # a fresh install: its models in its own data folder (seeded below), no shared models folder
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "SPRIG_MODELS")}
    env.update(HOME=str(home), SPRIG_HOME=str(data), XDG_CACHE_HOME=str(home / ".cache"),
               PYTHONPATH=str(REPO))
    return env


def _seed_models(embedder, data: Path, gemma_path: Path | None = None) -> None:
    """Copy the already-built embedder (and Gemma) into a fresh data folder, as a warm install has."""
    models = data / "models"
    models.mkdir(parents=True, exist_ok=True)
    for item in embedder.cache_dir.iterdir():
        if item.name.startswith("all-MiniLM"):
            target = models / item.name
            if item.is_dir():
                # not the files of a build another test worker has in progress, nor its lock
                shutil.copytree(item, target, dirs_exist_ok=True, copy_function=shutil.copy2,
                                ignore=shutil.ignore_patterns(".*", "*.lock"))
            else:
                shutil.copy2(item, target)
    if gemma_path is not None:
        for item in gemma_path.parent.iterdir():
            if item.name.startswith(gemma_path.stem) and not item.name.endswith(".lock"):
                shutil.copy2(item, models / item.name)


def test_control_onnx_runtime_writes_its_telemetry_files_when_not_told_otherwise(tmp_path):
    """Positive control: the check below would see ONNX Runtime's telemetry state."""
    env = _clean_env(tmp_path, tmp_path / "data")
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, check=True, timeout=120)
    if not (tmp_path / ".cache" / "Microsoft").exists():
        pytest.skip("this ONNX Runtime build keeps no telemetry state (nothing to guard against)")


def _inet_attempts(trace: Path) -> list[str]:
    lines = trace.read_text(errors="replace").splitlines()
    return [line for line in lines
            if re.search(r"sa_family=AF_INET6?", line) and "127.0.0.1" not in line and '"::1"' not in line
            or "htons(53)" in line]


def _fresh_install(tmp_path, embedder, gemma_path) -> tuple[Path, Path, Path]:
    """(home, data folder, documents): an empty HOME, a warm data folder, one note to index."""
    home, data, docs = tmp_path / "home", tmp_path / "data", tmp_path / "docs"
    home.mkdir()
    docs.mkdir()
    (docs / "notes.txt").write_text("The generator is tested on the first Monday of each month.\n")
    _seed_models(embedder, data, gemma_path)
    return home, data, docs


def test_cli_search_and_ask_phone_nowhere_and_write_only_the_data_folder(tmp_path, embedder, gemma_path):
    home, data, docs = _fresh_install(tmp_path, embedder, gemma_path)
    env = _clean_env(home, data)
    strace = shutil.which("strace")
    traces = []

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "desktop.cli", *args]
        if strace:
            traces.append(tmp_path / f"trace-{len(traces)}.txt")
            cmd = [strace, "-f", "-qq", "-e", "trace=connect,sendto", "-o", str(traces[-1]), *cmd]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    assert run("index", str(docs)).returncode == 0
    hits = json.loads(run("search", "When is the generator tested?", "--json").stdout)
    assert hits and hits[0]["path"].endswith("notes.txt")
    asked = run("ask", "When is the generator tested?", "--model", "bundled-gemma", "--json")
    assert asked.returncode == 0, asked.stderr[-2000:]
    answer = json.loads(asked.stdout)
    assert {"answer", "abstained", "citations", "evidence", "claims"} <= set(answer)
    if answer["evidence"]:  # the sentence spans behind each numbered evidence line
        line = answer["evidence"][0]
        text = (docs / "notes.txt").read_text()
        assert text[line["char_start"]:line["char_end"]] == line["text"]
    assert not (home / ".cache").exists(), sorted(str(p) for p in home.rglob("*"))
    assert sorted(p.name for p in home.iterdir()) == []
    for trace in traces:  # native code too: every process and thread, not only Python sockets
        assert _inet_attempts(trace) == [], trace.read_text()[-3000:]


def test_privacy_switches_are_set_on_import():
    code = "import os, desktop; print(os.environ.get('ORT_DISABLE_TELEMETRY'), os.environ.get('HF_HUB_OFFLINE'))"
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "HF_HUB_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"]


# ------------------------------------------------------------------ special files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_being_opened(library, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    os.mkfifo(folder / "x.txt")
    (folder / "ok.txt").write_text("Plain words about the pump.\n")
    started = time.monotonic()
    summary = library.index([folder])
    assert time.monotonic() - started < 60
    assert summary.indexed == [str(folder / "ok.txt")]
    reason = summary.failed[str(folder / "x.txt")]
    assert "not a regular file" in reason and "named pipe" in reason
    # a second pass (a linked folder re-scanned at start-up) does not hang either
    again = library.index([folder])
    assert str(folder / "x.txt") in again.failed


def test_file_sha256_refuses_a_fifo(tmp_path):
    from desktop.rag.library import file_sha256

    os.mkfifo(tmp_path / "p.txt")
    with pytest.raises(OSError):
        file_sha256(tmp_path / "p.txt")


# ------------------------------------------------------------------ settings
def test_settings_that_do_not_parse_are_kept_aside_never_overwritten(tmp_path):
    from desktop.config import Settings

    path = tmp_path / "settings.json"
    broken = '{"system_prompts": {"work": "Be terse"}, "temperature": 0.5,'
    path.write_text(broken)
    settings = Settings.load(path)
    assert settings == Settings()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.unreadable-")]
    assert len(kept) == 1 and kept[0].read_text() == broken
    assert any(kept[0].name in problem for problem in settings.problems)
    settings.save(path)  # the window's save on quit
    assert kept[0].read_text() == broken


def test_settings_are_checked_field_by_field(tmp_path):
    from desktop.config import Settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({
        "temperature": "hot", "context_size": 10**9, "passages_per_answer": 0, "parse_timeout_s": -5,
        "allow_general_knowledge": "yes", "system_prompts": {"work": "Be terse"}, "model": "bundled-gemma",
        "unknown_key": 1,
    }))
    settings = Settings.load(path)
    assert settings.temperature == Settings().temperature
    assert settings.context_size == 32768
    assert settings.passages_per_answer == 1
    assert settings.parse_timeout_s == 5.0
    assert settings.allow_general_knowledge is False
    assert settings.system_prompts == {"work": "Be terse"} and settings.model == "bundled-gemma"
    text = " | ".join(settings.problems)
    for name in ("temperature", "context_size", "passages_per_answer", "parse_timeout_s", "allow_general_knowledge"):
        assert name in text
    assert any(p.name.startswith("settings.json.before-fix-") for p in tmp_path.iterdir())
    assert "problems" not in json.loads(_saved(settings, tmp_path))


def _saved(settings, folder: Path) -> str:
    target = folder / "out.json"
    settings.save(target)
    return target.read_text()


def test_cli_reports_settings_problems_and_runs(sprig_home):
    (sprig_home / "settings.json").write_text('{"context_size": "big"}')
    result = subprocess.run([sys.executable, "-m", "desktop.cli", "docs"], capture_output=True, text=True,
                            env={**os.environ, "SPRIG_HOME": str(sprig_home)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "warning: settings: 'context_size' must be a number" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ names shown to a person
def test_control_and_bidi_characters_are_shown_escaped():
    from desktop.display import display_name, printable

    assert printable("a\x1b]0;owned\x07b\nc") == "a\\x1b]0;owned\\x07b\\x0ac"
    assert display_name("/tmp/invoice\u202efdp.exe") == "invoice\\u202efdp.exe"
    assert printable("Größe – ok") == "Größe – ok"


def test_cli_never_prints_a_raw_escape_sequence_from_a_file_name(sprig_home, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    evil = folder / "\x1b[2J\x1b]0;pwned\x07fake\nFAILED other.txt"
    evil.with_suffix(".txt").write_text("")  # empty: fails, so its name is printed as a failure
    env = {**os.environ, "SPRIG_HOME": str(sprig_home)}
    for args in (["index", str(folder)], ["docs"]):
        out = subprocess.run([sys.executable, "-m", "desktop.cli", *args], capture_output=True, text=True,
                             env=env, timeout=300)
        both = out.stdout + out.stderr
        assert "\x1b" not in both and "\x07" not in both
        assert "\\x1b[2J" in both
        assert "\nFAILED other.txt" not in both


# ------------------------------------------------------------------ SIGTERM
def test_sigterm_quits_the_window_like_ctrl_q(tmp_path, sprig_home):
    report = tmp_path / "painted.json"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "desktop", "--data-dir", str(sprig_home), "--no-auto-load",
                             "--startup-report", str(report)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not report.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert report.exists(), proc.stderr.read() if proc.poll() is not None else "no paint"
        assert not (sprig_home / "settings.json").exists()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, proc.stderr.read()[-2000:]
    # quitting saved the window's state and released the lock, as Ctrl+Q does
    assert (sprig_home / "settings.json").exists()
    assert not (sprig_home / "sprig.lock").exists()


# ------------------------------------------------------------------ odd paths, long jobs
def test_a_path_too_long_for_the_file_system_fails_alone(library, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.txt").write_text("The valve is checked weekly.\n")
    long_name = "/".join(["d" * 200] * 25) + "/x.txt"  # over PATH_MAX
    summary = library.index([long_name, "ok.txt"])
    assert summary.indexed == [str(tmp_path / "ok.txt")]
    assert "too long" in next(iter(summary.failed.values())).lower()


def test_cli_reports_progress_when_not_on_a_terminal(sprig_home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(2):
        (docs / f"n{i}.txt").write_text(f"Note {i} about the pump.\n")
    result = subprocess.run([sys.executable, "-m", "desktop.cli", "index", str(docs)], capture_output=True,
                            text=True, env={**os.environ, "SPRIG_HOME": str(sprig_home)}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "[1/2] n0.txt" in result.stderr and "[2/2] n1.txt" in result.stderr


def test_the_window_answering_phones_nowhere_and_writes_only_the_data_folder(tmp_path, embedder, gemma_path):
    from desktop.config import Paths, Settings

    home, data, docs = _fresh_install(tmp_path, embedder, gemma_path)
    Settings(model="bundled-gemma", max_answer_tokens=24, abstain_below=0.0).save(Paths(data).settings)
    env = {**_clean_env(home, data), "QT_QPA_PLATFORM": "offscreen"}
    cmd = [sys.executable, str(REPO / "tests" / "helpers" / "answer_driver.py"), str(data), str(docs),
           "When is the generator tested?"]
    strace = shutil.which("strace")
    trace = tmp_path / "trace.txt"
    if strace:
        cmd = [strace, "-f", "-qq", "-e", "trace=connect,sendto", "-o", str(trace), *cmd]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "ANSWER" in run.stdout, run.stdout[-2000:] + run.stderr[-3000:]
    assert sorted(p.name for p in home.iterdir()) == [], sorted(str(p) for p in home.rglob("*"))
    if strace:
        assert _inet_attempts(trace) == [], trace.read_text()[-3000:]
