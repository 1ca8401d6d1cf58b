"""The `sprig` command line, run as a user would run it (a real subprocess)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import eval_path
from tests.helpers import ctrl_c_sprig


def sprig(*args: str, home, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPRIG_HOME": str(home), **(env or {})}
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

    result = sprig("index", str(pdf), str(notes), str(broken), "--collection", "work", "--json",
                   home=sprig_home, check=False)
    assert result.returncode == 1  # one file failed...
    summary = json.loads(result.stdout)
    assert sorted(summary["indexed"]) == sorted([str(pdf), str(notes)])  # ...the others were indexed
    assert summary["pages"] > 10 and summary["chunks"] > 0 and summary["cancelled"] is False
    [failure] = summary["failed"]
    assert failure["path"] == str(broken) and "damaged PDF" in failure["reason"]
    # the failure is printed once, as one line, on stderr
    failed_lines = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert failed_lines == [f"FAILED {broken}: {failure['reason']}"], result.stderr

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
    quiet = sprig("index", "-q", str(notes), "--collection", "work", home=sprig_home)
    assert quiet.stdout == "" and quiet.stderr == ""

    sprig("remove", str(notes), home=sprig_home)
    docs = json.loads(sprig("docs", "--json", home=sprig_home).stdout)
    assert str(notes) not in {d["path"] for d in docs}
    nothing = sprig("remove", str(notes), home=sprig_home, check=False)
    assert nothing.returncode == 1 and nothing.stderr.count("\n") == 1
    assert sprig("check", home=sprig_home).returncode == 0


def test_docs_reports_a_document_searchable_by_keyword_while_it_embeds(sprig_home, tmp_path, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library
    from desktop.rag.types import CancelToken

    notes = tmp_path / "notes.txt"
    notes.write_text("The backup generator is tested on the first Monday of each month.", encoding="utf-8")
    lib = Library(Paths(sprig_home), Settings(), embedder=embedder)
    cancel = CancelToken()
    # cancelled once its chunks are committed, before any vector is written
    lib.index([notes], progress=lambda p: p.stage == "store" and cancel.cancel(), cancel=cancel)
    lib.close()

    [doc] = json.loads(sprig("docs", "--json", home=sprig_home).stdout)
    assert (doc["status"], doc["embedded"], doc["chunks"]) == ("embedding", 0.0, 1)
    listed = sprig("docs", home=sprig_home).stdout
    assert "keyword search only, embedding 0% (1 pages, 1 chunks)" in listed
    hits = json.loads(sprig("search", "backup generator", "--json", home=sprig_home).stdout)
    assert hits[0]["path"] == str(notes) and hits[0]["bm25"] is not None
    sprig("index", str(notes), home=sprig_home)  # writes its vectors
    [doc] = json.loads(sprig("docs", "--json", home=sprig_home).stdout)
    assert (doc["status"], doc["embedded"]) == ("indexed", 1.0)


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
    assert all("path" in p and "file" not in p for p in answer["nearest"])


# ------------------------------------------------------------------ arguments and exit codes
def _parsers(parser: argparse.ArgumentParser, name: str = "sprig"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_command_and_argument_has_help_and_an_example():
    from desktop.cli import build_parser

    parsers = dict(_parsers(build_parser()))
    assert {"sprig index", "sprig search", "sprig docs", "sprig remove", "sprig ask", "sprig chats",
            "sprig chats export", "sprig check"} <= set(parsers)
    for name, parser in parsers.items():
        assert "examples:" in (parser.epilog or ""), name
        for line in parser.epilog.split("examples:", 1)[1].strip().splitlines()[:1]:
            assert line.strip().startswith("sprig"), (name, line)
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    text = parsers["sprig"].format_help()
    for code in ("0", "1", "2", "3", "4", "130"):
        assert re.search(rf"^  {code} +\S", text, re.MULTILINE), code


def test_version_usage_errors_and_sprig_errors_have_their_exit_codes(sprig_home, tmp_path):
    from desktop import __version__

    version = sprig("--version", home=sprig_home)
    assert version.stdout.strip() == f"sprig {__version__}"
    for args in (["bogus"], ["-q", "-v", "docs"], ["search"], ["chats", "export", "seven"],
                 ["--data-dir", str(tmp_path / "a-file"), "docs"]):
        (tmp_path / "a-file").write_text("not a folder")
        result = sprig(*args, home=sprig_home, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "error:" in result.stderr, (args, result.stderr)
        assert result.stdout == ""
    missing = sprig("chats", "export", "12345", home=sprig_home, check=False)
    assert missing.returncode == 3
    assert missing.stderr == "error: there is no saved chat with id 12345 (`sprig chats` lists them)\n"


def test_data_dir_overrides_sprig_home_before_or_after_the_command(sprig_home, tmp_path):
    other = tmp_path / "other-data"
    notes = tmp_path / "notes.txt"
    notes.write_text("The valve is checked every Tuesday.", encoding="utf-8")
    sprig("--data-dir", str(other), "index", str(notes), home=sprig_home)
    assert (other / "catalog.sqlite3").exists() and not (sprig_home / "catalog.sqlite3").exists()
    listed = json.loads(sprig("docs", "--json", "--data-dir", str(other), home=sprig_home).stdout)
    assert [d["path"] for d in listed] == [str(notes)]
    assert json.loads(sprig("docs", "--json", home=sprig_home).stdout) == []


def test_ctrl_c_stops_indexing_with_exit_code_130(sprig_home, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(40):
        (folder / f"n{i:02}.txt").write_text(f"Note {i} about the pump. " * 400, encoding="utf-8")
    code, out, err, started = ctrl_c_sprig(["index", str(folder)], {**os.environ, "SPRIG_HOME": str(sprig_home)},
                                           when="[1/40]", after_s=1)  # "  [1/40] n00.txt": indexing has started
    assert len(started) == 1, started
    assert code == 130, out + err
    assert "interrupted" in err and "Traceback" not in err, err


@pytest.mark.parametrize("after_s", [0.3, 1.0])
def test_ctrl_c_while_the_embedder_is_prepared_exits_130_and_leaves_no_half_built_file(sprig_home, tmp_path, after_s):
    """At any moment of the build (torch and transformers loading, the export): it used to run in
    Sprig's process, where a Ctrl+C landing in transformers' lazy imports came out as an import
    error (exit 1) or killed the process by the signal (exit -2)."""
    note = tmp_path / "pump.txt"
    note.write_text("The feed pump gasket is part QX-7781-B.", encoding="utf-8")
    models = tmp_path / "fresh-models"  # nothing built here yet: the embedder is prepared first
    env = {**os.environ, "SPRIG_HOME": str(sprig_home), "SPRIG_MODELS": str(models)}
    code, out, err, _ = ctrl_c_sprig(["index", str(note)], env, when="preparing the embedder", after_s=after_s,
                                     timeout=60)
    assert code == 130, out + err
    assert "interrupted" in err and "Traceback" not in err, err
    assert not [p for p in models.rglob("*") if p.suffix in (".onnx", ".tmp")]  # no file half built


# ------------------------------------------------------------------ progress
class _Terminal:
    """A real pseudo-terminal of a given width, as the stream a bar draws on."""

    def __init__(self, columns: int):
        import fcntl
        import pty
        import struct
        import termios
        import tty

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        tty.setraw(slave)
        self.stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115

    def read(self) -> str:
        self.stream.flush()
        self.stream.close()
        data = b""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        os.close(self.master)
        return data.decode("utf-8")


def _feed(bar) -> None:
    from desktop.rag.types import Progress

    long_name = "/docs/" + "a-very-long-report-name-" * 4 + "{}.pdf"
    for i in (1, 2):
        bar(Progress("parse", i, 2, long_name.format(i)))
        for done in range(0, 41, 8):
            bar(Progress("embed", i, 2, long_name.format(i), chunks=40, chunks_done=done))
            time.sleep(0.03)
    bar(Progress("fail", 2, 2, "/docs/bad.pdf", message="damaged PDF (no trailer)"))
    bar(Progress("fail", 2, 2, "/docs/bad.pdf", message="damaged PDF (no trailer)"))
    bar.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals as on Linux")
@pytest.mark.parametrize("columns", [50, 80, 132])
def test_the_progress_bar_fits_the_terminal(columns):
    from desktop.cli import _Bar

    term = _Terminal(columns)
    _feed(_Bar(stream=term.stream))
    screen = term.read()
    lines = [line for line in re.split(r"[\r\n]", screen) if line.strip()]
    bars = [line for line in lines if "%|" in line]
    assert len(bars) >= 4, screen  # tqdm drew and redrew it
    assert max(len(line) for line in lines) < columns, screen
    if columns >= 80:  # (narrower, tqdm cuts the end of the line)
        assert any("2/2 embed" in line and "40/40 chunks" in line and "…" in line for line in bars)
    assert lines.count("FAILED /docs/bad.pdf: damaged PDF (no trailer)") == 1


def test_progress_off_a_terminal_is_plain_lines_and_quiet_is_silent():
    from desktop.cli import _Bar

    log = io.StringIO()
    _feed(_Bar(stream=log))
    text = log.getvalue()
    assert "\r" not in text and "%|" not in text
    assert "[1/2] a-very-long-report-name-" in text and "[2/2] a-very-long" in text
    assert text.count("FAILED /docs/bad.pdf") == 1
    quiet = io.StringIO()
    _feed(_Bar(quiet=True, stream=quiet))
    assert quiet.getvalue() == "FAILED /docs/bad.pdf: damaged PDF (no trailer)\n"  # errors only


def test_ocr_pages_are_one_line_per_file_off_a_terminal_and_named_on_the_bar():
    from desktop.cli import _Bar
    from desktop.rag.types import Progress

    log = io.StringIO()
    bar = _Bar(stream=log)
    bar(Progress("parse", 1, 1, "/docs/scan.pdf"))
    for page in range(1, 13):
        bar(Progress("parse", 1, 1, "/docs/scan.pdf", chunks=12, chunks_done=page,
                     message=f"OCR: page {page} of 12"))
    bar.close()
    assert log.getvalue() == "  [1/1] scan.pdf\n"  # not a line per page (one every 15 s at most)

    term = _Terminal(100)
    bar = _Bar(stream=term.stream)
    for page in (2, 3, 4):
        bar(Progress("parse", 1, 1, "/docs/scan.pdf", chunks=12, chunks_done=page, message=f"OCR: page {page} of 12"))
        time.sleep(0.15)
    bar.close()
    assert "OCR: page 3 of 12" in term.read()


# ------------------------------------------------------------------ chats
def test_ask_adds_to_a_saved_chat_the_window_shows_and_exports_it(sprig_home, tmp_path):
    from desktop.chats import ChatStore
    from desktop.config import Paths
    from desktop.lock import DataFolderLock

    notes = tmp_path / "generator.txt"
    notes.write_text("Generator log.\n\nThe backup generator is tested on the first Monday of each month. "
                     "It runs for thirty minutes under load.\n", encoding="utf-8")
    sprig("index", str(notes), "--collection", "work", home=sprig_home)
    # a chat made in the window, on the "work" collection
    store = ChatStore(Paths(sprig_home).chats)
    made_in_window = store.create("Generator", "work")
    store.close()

    # no --collection: the chat's own collection is used (the default one is empty)
    first = json.loads(sprig("ask", "--chat", "Generator", "When is the generator tested?",
                             "--model", "bundled-gemma", "--json", home=sprig_home).stdout)
    assert first["chat"] == {"id": made_in_window.id, "title": "Generator"}
    assert first["citations"] and first["citations"][0]["path"] == str(notes)
    second = sprig("ask", "--chat", "Generator", "How long does it run?", "--model", "bundled-gemma",
                   home=sprig_home)
    assert f'saved in chat {made_in_window.id} "Generator"' in second.stderr
    new = json.loads(sprig("ask", "--chat", "Valves", "When is the backup generator tested?",
                           "--collection", "work", "--model", "bundled-gemma", "--json", home=sprig_home).stdout)
    assert new["chat"]["id"] != made_in_window.id

    # the store the window reads holds both questions and answers, sources included
    store = ChatStore(Paths(sprig_home).chats)
    conv = store.load(made_in_window.id)
    assert [m.role for m in conv.messages] == ["user", "assistant", "user", "assistant"]
    assert conv.messages[2].content == "How long does it run?"
    meta = conv.messages[1].meta
    assert meta["collection"] == "work" and meta["model"]
    assert meta["citations"][0]["path"] == str(notes) and meta["citations"][0]["text"]
    store.close()

    # listing and exporting work while the window holds the data folder
    with DataFolderLock(Paths(sprig_home).lock) as held:
        assert held.acquire()
        listed = json.loads(sprig("chats", "--json", home=sprig_home).stdout)
        exported = sprig("chats", "export", str(made_in_window.id), home=sprig_home).stdout
        assert sprig("docs", home=sprig_home, check=False).returncode == 4
    assert [c["title"] for c in listed] == ["Valves", "Generator"]  # most recent first
    assert {c["title"]: c["messages"] for c in listed} == {"Generator": 4, "Valves": 2}
    assert all(re.match(r"\d{4}-\d\d-\d\dT", c["updated"]) for c in listed)
    assert exported.startswith("# Generator\n") and "2 questions" in exported
    assert "When is the generator tested?" in exported and "How long does it run?" in exported
    citation = first["citations"][0]
    head = f"**[{citation['n']}]** generator.txt — `{notes}`"
    assert head in exported, exported
    quote = exported.split(head, 1)[1].split("\n\n", 2)[1]
    assert quote == "> " + " ".join(citation["text"].split())
    plain = sprig("chats", home=sprig_home).stdout
    assert re.search(rf"^\s*{made_in_window.id}\s.*4 messages\s+\[work\]\s+Generator$", plain, re.MULTILINE)
