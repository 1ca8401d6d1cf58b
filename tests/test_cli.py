"""The `sprig` command line, run as a user would run it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import eval_path


def sprig(*args: str, home, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPRIG_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "desktop.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def test_index_search_docs_remove(sprig_home, tmp_path):
    pdf = eval_path("financebench", "pdfs", "AMCOR_2023Q4_EARNINGS.pdf")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"garbage" * 100)
    notes = tmp_path / "notes.txt"
    notes.write_text("The backup generator is tested on the first Monday of each month.", encoding="utf-8")

    result = sprig("index", str(pdf), str(notes), str(broken), "--collection", "work", home=sprig_home, check=False)
    assert result.returncode == 1  # one file failed...
    assert "indexed 2 file(s)" in result.stdout  # ...the others were indexed
    assert "FAILED" in result.stdout and "broken.pdf" in result.stdout and "damaged PDF" in result.stdout

    hits = json.loads(sprig("search", "When is the backup generator tested?", "-k", "3", "--collection", "work",
                            "--json", home=sprig_home).stdout)
    assert hits[0]["path"] == str(notes)
    assert {"path", "page", "text", "score"} <= set(hits[0])
    pdf_hits = json.loads(sprig("search", "Amcor fiscal 2023 results outlook", "--collection", "work", "--json",
                                home=sprig_home).stdout)
    assert pdf_hits[0]["path"] == str(pdf) and isinstance(pdf_hits[0]["page"], int)

    docs = json.loads(sprig("docs", "--json", home=sprig_home).stdout)
    by_path = {d["path"]: d for d in docs}
    assert by_path[str(pdf)]["status"] == "indexed" and by_path[str(pdf)]["pages"] > 10
    assert by_path[str(pdf)]["chunks"] > 0
    assert by_path[str(broken)]["status"] == "failed" and "damaged" in by_path[str(broken)]["reason"]
    for d in docs:
        assert {"path", "status", "reason", "pages", "chunks"} <= set(d)

    again = sprig("index", str(pdf), str(notes), "--collection", "work", home=sprig_home)
    assert "indexed 0 file(s)" in again.stdout and "unchanged 2" in again.stdout

    sprig("remove", str(notes), home=sprig_home)
    docs = json.loads(sprig("docs", "--json", home=sprig_home).stdout)
    assert str(notes) not in {d["path"] for d in docs}
    assert sprig("check", home=sprig_home).returncode == 0


def test_ask_json_abstains_on_uncovered_question(sprig_home, tmp_path):
    notes = tmp_path / "garden.txt"
    notes.write_text("Tomatoes need six hours of sun and water every second day.", encoding="utf-8")
    sprig("index", str(notes), home=sprig_home)
    result = sprig("ask", "Who won the 1998 FIFA World Cup final?", "--json", "--model", "bundled-gemma",
                   home=sprig_home)
    answer = json.loads(result.stdout)
    assert answer["abstained"] is True
    assert answer["citations"] == []
    assert {"answer", "abstained", "citations"} <= set(answer)
