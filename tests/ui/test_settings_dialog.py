"""The settings dialog's servers and the window's remembered layout.

The Test buttons talk to real HTTP servers on 127.0.0.1 started here: a small one that
answers like an OpenAI-compatible model server and like a Chroma server with token auth
(so wrong keys, missing keys, slow answers and other paths can be staged), a real
``chroma run`` when the chroma command is installed, a closed port and a port that accepts
but never answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PySide6.QtCore import QSize

from desktop.config import Paths, Settings
from desktop.rag.servers import check_chroma_server, check_model_server
from desktop.rag.types import Source
from desktop.ui.settings_dialog import SERVER, SettingsDialog

MODEL_KEY = "sesame"
CHROMA_TOKEN = "chroma-token"
MODELS = ["qwen2.5-0.5b-instruct", "gemma-3-270m"]


class FakeServers(BaseHTTPRequestHandler):
    """/v1/models (needs the key), /api/v2/heartbeat and /version (open), /api/v2/auth/identity
    and collections_count (need the token), and /slow/... which answers after a delay."""

    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization", "")
        self.seen.append((self.path, auth))
        path = self.path
        if path.startswith("/slow/"):
            time.sleep(1.0)
            path = path[len("/slow"):]
        if path == "/v1/models":
            if auth != f"Bearer {MODEL_KEY}":
                return self.reply(401, {"error": {"message": "Invalid API Key"}})
            return self.reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        if path == "/api/v2/heartbeat":
            return self.reply(200, {"nanosecond heartbeat": time.time_ns()})
        if path == "/api/v2/version":
            return self.reply(200, "1.0.0")
        if path.startswith("/api/v2/") and auth != f"Bearer {CHROMA_TOKEN}":
            return self.reply(403, {"error": "Forbidden"})
        if path == "/api/v2/auth/identity":
            return self.reply(200, {"user_id": "", "tenant": "default_tenant", "databases": ["default_database"]})
        if path == "/api/v2/tenants/default_tenant/databases/default_database/collections_count":
            return self.reply(200, 3)
        return self.reply(404, {"error": "Not Found"})

    def reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_server():
    FakeServers.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def dialog(qtbot):
    made = SettingsDialog(Settings(), "default")
    qtbot.addWidget(made)
    made.show()
    return made


def run_test(qtbot, fields, url: str, secret: str = "", timeout_s: float | None = None) -> str:
    fields.url.setText(url)
    fields.secret.setText(secret)
    if timeout_s is not None:
        fields.timeout_s = timeout_s
    fields.test_button.click()
    qtbot.waitUntil(lambda: not fields.testing and fields.result.text()[:1] in "✓✗", timeout=20_000)
    return fields.result.text()


# ------------------------------------------------------------------ model server
def test_the_model_server_test_lists_its_models_without_blocking_the_window(qtbot, dialog, fake_server):
    dialog.model.setCurrentIndex(dialog.model.findData(SERVER))
    fields = dialog.model_server
    assert fields.url.isVisible() and not dialog.chroma_server.url.isVisible()
    fields.url.setText(fake_server + "/slow")
    fields.secret.setText(MODEL_KEY)
    started = time.monotonic()
    fields.test_button.click()
    # the click returned at once, while the server takes a second to answer
    assert time.monotonic() - started < 0.5
    assert fields.testing and not fields.test_button.isEnabled()
    assert fields.result.text().startswith("Testing")
    qtbot.waitUntil(lambda: fields.result.text().startswith("✓"), timeout=10_000)
    port = fake_server.rsplit(":", 1)[1]
    assert fields.result.text() == f"✓ Connected to 127.0.0.1:{port}: 2 models ({', '.join(MODELS)})"
    assert ("/slow/v1/models", f"Bearer {MODEL_KEY}") in FakeServers.seen
    qtbot.waitUntil(fields.test_button.isEnabled)
    # a "/v1" address is used as it is
    assert run_test(qtbot, fields, fake_server + "/v1", MODEL_KEY).startswith("✓ Connected")


def test_the_model_server_test_names_what_went_wrong(qtbot, dialog, fake_server, closed_port, silent_port):
    fields = dialog.model_server
    assert run_test(qtbot, fields, fake_server, "wrong") == "✗ The server refused the key (HTTP 401)"
    assert run_test(qtbot, fields, fake_server) == "✗ The server asks for a key (HTTP 401): enter one"
    assert run_test(qtbot, fields, f"http://127.0.0.1:{closed_port}") == (
        f"✗ Nothing answers at 127.0.0.1:{closed_port} (connection refused): is the server running?")
    assert run_test(qtbot, fields, f"http://127.0.0.1:{silent_port}", timeout_s=0.5) == (
        f"✗ No answer from 127.0.0.1:{silent_port} within 0.5 s")
    assert run_test(qtbot, fields, fake_server + "/elsewhere", MODEL_KEY) == (
        f"✗ HTTP 404 Not Found from {fake_server}/elsewhere/v1/models: is this an OpenAI-compatible server?")
    assert run_test(qtbot, fields, "localhost:8080") == (
        "✗ “localhost:8080” is not a server address: write it as http://host:port")


def test_an_answer_about_an_address_no_longer_in_the_field_is_not_shown(qtbot, dialog, fake_server):
    fields = dialog.model_server
    fields.url.setText(fake_server + "/slow")
    fields.secret.setText(MODEL_KEY)
    fields.test_button.click()
    fields.url.setText("http://127.0.0.1:1")
    fields.url.textEdited.emit(fields.url.text())  # as typing does
    qtbot.waitUntil(lambda: not fields.testing, timeout=10_000)
    qtbot.wait(50)
    assert fields.result.text() == "" and not fields.result.isVisible()


# ------------------------------------------------------------------ Chroma server
def test_the_chroma_test_reports_version_tenant_and_collections(qtbot, dialog, fake_server, closed_port):
    dialog.library.setCurrentIndex(dialog.library.findData(SERVER))
    fields = dialog.chroma_server
    assert fields.url.isVisible() and fields.secret.isVisible()
    port = fake_server.rsplit(":", 1)[1]
    assert run_test(qtbot, fields, fake_server, CHROMA_TOKEN) == (
        f"✓ Connected to 127.0.0.1:{port}: Chroma 1.0.0, tenant default_tenant, database default_database, "
        "3 collections")
    assert ("/api/v2/auth/identity", f"Bearer {CHROMA_TOKEN}") in FakeServers.seen
    assert run_test(qtbot, fields, fake_server, "stale") == (
        f"✗ Chroma 1.0.0 at 127.0.0.1:{port} answers, but: The server refused the token (HTTP 403)")
    assert run_test(qtbot, fields, fake_server + "/elsewhere") == (
        f"✗ HTTP 404 Not Found from {fake_server}/elsewhere/api/v2/heartbeat: "
        "this is not a Chroma server of version 1.0 or later")
    assert run_test(qtbot, fields, f"http://127.0.0.1:{closed_port}").startswith(
        f"✗ Nothing answers at 127.0.0.1:{closed_port} (connection refused)")
    assert dialog.library_note.isVisible()  # the library moves at the next start


def chroma_command() -> Path | None:
    found = Path(sys.executable).with_name("chroma")
    return found if found.exists() else (Path(p) if (p := shutil.which("chroma")) else None)


def test_a_real_chroma_server_is_found_with_its_collections(tmp_path, closed_port):
    command = chroma_command()
    if command is None:
        pytest.skip("the chroma command is not installed")
    port = closed_port  # free a moment ago
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(command), "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        deadline = time.monotonic() + 60
        while not (found := check_chroma_server(url, timeout_s=2)).ok and time.monotonic() < deadline:
            assert proc.poll() is None, "chroma run exited"
            time.sleep(0.2)
        assert found.ok, found.summary
        assert found.summary.endswith("tenant default_tenant, database default_database, 0 collections")
        assert found.found[0].startswith("Chroma ")
        create = urllib.request.Request(
            f"{url}/api/v2/tenants/default_tenant/databases/default_database/collections",
            data=json.dumps({"name": "sprig_check"}).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(create, timeout=10).close()
        assert check_chroma_server(url).summary.endswith(", 1 collection")
        # not a model server: it says so instead of pretending
        model = check_model_server(url)
        assert not model.ok and "is this an OpenAI-compatible server?" in model.summary
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ------------------------------------------------------------------ saved and validated
@pytest.fixture
def window_at(qtbot, sprig_home):
    """The real window on the test's data folder, settings read from its file; closed at the end."""
    from desktop.ui.window import MainWindow
    from desktop.ui.workers import live_workers

    windows = []

    def make(settings: Settings | None = None):
        paths = Paths(sprig_home)
        if settings is None and not paths.settings.exists():
            settings = Settings(auto_load_model=False)
        window = MainWindow(paths, settings, auto_load=False, startup_jobs=False, watch=False)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
    qtbot.waitUntil(lambda: not live_workers(), timeout=30_000)


def test_servers_chosen_in_the_dialog_are_saved_privately_and_shown_again(qtbot, window_at, sprig_home, monkeypatch):
    first = window_at()

    def fill_and_accept(dialog: SettingsDialog) -> int:
        dialog.model.setCurrentIndex(dialog.model.findData(SERVER))
        dialog.model_server.url.setText("http://127.0.0.1:8080/v1")
        dialog.model_server.secret.setText(MODEL_KEY)
        dialog.library.setCurrentIndex(dialog.library.findData(SERVER))
        dialog.chroma_server.url.setText("http://127.0.0.1:8000")
        dialog.chroma_server.secret.setText(CHROMA_TOKEN)
        assert dialog.library_form.isRowVisible(dialog.signed_as) and dialog.signed_as.placeholderText()
        dialog.signed_as.setText(" alice ")
        dialog.accept()
        return dialog.result()

    monkeypatch.setattr(SettingsDialog, "exec", fill_and_accept)
    first.open_settings()
    first.close()
    path = Paths(sprig_home).settings
    saved = Settings.load(path)
    assert (saved.model_endpoint, saved.model_api_key) == ("http://127.0.0.1:8080/v1", MODEL_KEY)
    assert (saved.chroma_url, saved.chroma_token) == ("http://127.0.0.1:8000", CHROMA_TOKEN)
    assert saved.library_name == "alice"
    assert saved.model == "bundled-qwen"  # kept for when the server is no longer wanted
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a key and a token

    monkeypatch.undo()
    second = window_at(Settings.load(path))
    dialog = SettingsDialog(second.settings, "default", second)
    assert dialog.model.currentData() == SERVER and dialog.library.currentData() == SERVER
    assert dialog.model_server.values() == ("http://127.0.0.1:8080/v1", MODEL_KEY)
    assert dialog.chroma_server.values() == ("http://127.0.0.1:8000", CHROMA_TOKEN)
    assert dialog.signed_as.text() == "alice"
    assert dialog.model_server.secret.echoMode() == dialog.model_server.secret.EchoMode.Password
    # back to the bundled model and this PC: the addresses are cleared, the model comes back
    dialog.model.setCurrentIndex(dialog.model.findData("bundled-gemma"))
    dialog.library.setCurrentIndex(0)
    assert not dialog.library_form.isRowVisible(dialog.signed_as)  # a name matters only when shared
    back = dialog.result_settings()
    assert (back.model, back.model_endpoint, back.chroma_url) == ("bundled-gemma", "", "")
    dialog.deleteLater()


@pytest.mark.parametrize("which,field,message", [
    ("model", "model_server", "Model server: “127.0.0.1:8080” is not a server address"),
    ("library", "chroma_server", "Chroma server: “127.0.0.1:8080” is not a server address"),
])
def test_a_server_address_that_is_not_one_is_refused(qtbot, dialog, which, field, message):
    combo = getattr(dialog, which)
    combo.setCurrentIndex(combo.findData(SERVER))
    getattr(dialog, field).url.setText("127.0.0.1:8080")
    dialog.accept()
    assert dialog.result() == 0 and dialog.isVisible()
    assert dialog.error.text().startswith(message)
    getattr(dialog, field).url.setText("")
    dialog.accept()
    assert "Enter the server's address" in dialog.error.text()


# ------------------------------------------------------------------ window layout
def test_window_size_and_pane_sizes_come_back_after_a_restart(qtbot, window_at, sprig_home):
    first = window_at()
    screen = first.screen().availableGeometry()
    size = QSize(min(1000, screen.width() - 40), min(700, screen.height() - 40))  # restoring keeps it on screen
    first.resize(size)
    qtbot.waitUntil(lambda: first.size() == size)
    first.splitter.setSizes([430, size.width() - 430, 0])
    first.side_splitter.setSizes([240, 360])
    qtbot.wait(50)
    main, side = first.splitter.sizes()[:2], first.side_splitter.sizes()
    assert main[0] == 430  # (the side pair is scaled to the height it has)
    first.close()
    saved = Settings.load(Paths(sprig_home).settings)
    assert saved.window_geometry and saved.splitter_sizes == f"{main[0]},{main[1]}/{side[0]},{side[1]}"

    second = window_at(saved)
    qtbot.wait(50)
    assert second.size() == size
    assert second.splitter.sizes()[:2] == main and second.side_splitter.sizes() == side
    # opening and closing a source keeps the side pane as wide as the user made it
    second.open_source(Source(n=1, path=str(sprig_home / "moved-away.txt"), page=None, text="x"))
    qtbot.wait(50)
    opened = second.splitter.sizes()
    assert opened[2] > 0  # (on a narrow screen the side pane gives way while the viewer is open)
    second.viewer.close_viewer()
    qtbot.wait(50)
    assert second.splitter.sizes()[0] == main[0] and second.splitter.sizes()[2] == 0


def test_a_damaged_layout_in_the_settings_is_ignored(qtbot, window_at, sprig_home):
    path = Paths(sprig_home).settings
    path.write_text(json.dumps({"auto_load_model": False, "window_geometry": "not base64 at all!",
                                "splitter_sizes": "wide,narrow"}))
    window = window_at(Settings.load(path))
    assert window.size() == QSize(1320, 840)  # the default
    assert window.splitter.sizes()[2] == 0 and window.splitter.sizes()[0] > 0
