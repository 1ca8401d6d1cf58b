"""Sprig answering through a model server: llama.cpp's OpenAI-compatible server as packaged for
Python (``python -m llama_cpp.server``) on the bundled Qwen, started on the loopback interface.

Real questions through the answer engine and ``sprig ask``, streaming, Stop (during the prompt and mid-answer),
the token budget counted by the server, a refused or missing key, a context smaller than
Sprig's, and the connection failures (nothing listening, no connection in time, no answer in
time). One small stand-in server at the end plays a server without a tokenizer, which
llama.cpp's servers never are, to check the local estimate.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from desktop.config import Paths, Settings
from desktop.errors import ModelError
from desktop.models.endpoint import CHARS_PER_TOKEN, EndpointModel
from desktop.rag.answer import AnswerEngine, load_model
from desktop.rag.servers import check_model_server

KEY = "sprig-test-key"
SERVER_CTX = 2048  # llama-cpp-python's default --n_ctx, half of Sprig's default context size
MANUAL = ("Pump manual.\n\nThe spare impeller is stored in locker 12 of the east workshop. "
          "The pump must be serviced every 500 hours.\n\nThe cabinet is painted green.\n")
QUESTION = "Where is the spare impeller stored?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_server(qwen_path, tmp_path_factory):
    """``python -m llama_cpp.server`` on the bundled Qwen, with an API key; its log is kept."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    # one thread each: on a shared 2-core machine two spinning llama.cpp threads run ~10x slower;
    # requests wait their turn instead of cutting the running answer short (the default)
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(qwen_path), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(SERVER_CTX), "--n_threads", "1", "--n_threads_batch", "1",
               "--api_key", KEY, "--interrupt_requests", "False"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    request = urllib.request.Request(url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not answer within 120 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    server = type("Server", (), {"url": url, "log": log_path, "proc": proc})
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
    log.close()


@pytest.fixture(scope="module")
def manual_library(tmp_path_factory, embedder):
    from desktop.rag.library import Library

    home = tmp_path_factory.mktemp("manual")
    doc = home / "pump-manual.txt"
    doc.write_text(MANUAL, encoding="utf-8")
    lib = Library(Paths(home / "data"), Settings(), embedder=embedder)
    assert not lib.index([doc]).failed
    yield lib
    lib.close()


def server_settings(url: str, key: str = KEY, **more) -> Settings:
    return Settings(model_endpoint=url, model_api_key=key, context_size=SERVER_CTX, max_answer_tokens=64, **more)


def server_usage(url: str, messages: list[dict]) -> int:
    """The prompt's size as the server itself counts it (its template included)."""
    body = json.dumps({"messages": messages, "max_tokens": 1, "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["usage"]["prompt_tokens"]


def long_request(words: int) -> list[dict]:
    text = " ".join(f"Line {i}: the boiler was checked and found in order." for i in range(words // 10))
    return [{"role": "user", "content": text + "\n\nHow many lines are there?"}]


# ------------------------------------------------------------------ answers
def test_a_question_is_answered_through_the_server_streamed_and_cited(model_server, manual_library):
    engine = AnswerEngine.from_settings(manual_library, server_settings(model_server.url))
    model = engine.model
    assert isinstance(model, EndpointModel)
    assert model.name == f"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf at {model_server.url[7:]}"
    assert model.tokenizer is not None and "/extras/tokenize" in model.tokenizer.name
    stream = engine.ask(QUESTION)
    pieces = list(stream)
    answer = stream.result
    assert len(pieces) > 3, pieces  # streamed piece by piece, not delivered at once
    assert answer.mode == "documents", answer.text  # the server's words, not a fallback quote
    assert "locker 12" in answer.text
    cited = answer.citations[0].passage
    assert cited.path.endswith("pump-manual.txt") and "locker 12" in cited.text
    assert answer.timings["first_token_s"] > 0


def test_prompts_are_counted_by_the_server_and_never_under_count(model_server, manual_library):
    model = EndpointModel(model_server.url, api_key=KEY, n_ctx=SERVER_CTX)
    engine = AnswerEngine(manual_library, model, max_answer_tokens=64)
    passages = manual_library.search(QUESTION, k=4)
    messages, shown = engine.build_messages(QUESTION, passages, [])
    real = server_usage(model_server.url, messages)
    counted = model.count(messages)
    # the budget holds (never fewer than the server's own count) and is not a blind guess:
    # the server's tokenizer counts the text, only the template's few tokens are estimated
    assert real <= counted <= real + 40, (real, counted)
    assert counted < sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
    assert model.count_text(MANUAL) == server_tokens(model_server.url, MANUAL) - server_tokens(model_server.url, "")
    cut = model.truncate_text(MANUAL, 12)
    assert MANUAL.startswith(cut.rstrip()) and model.count_text(cut) <= 12 < model.count_text(MANUAL)


def server_tokens(url: str, text: str) -> int:
    request = urllib.request.Request(url + "/extras/tokenize/count", data=json.dumps({"input": text}).encode(),
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["count"]


def test_a_context_smaller_than_sprigs_is_reported_and_adopted(model_server):
    model = EndpointModel(model_server.url, api_key=KEY, n_ctx=4096)  # the server holds 2048
    # llama-cpp-python ends such a stream with neither a word nor an error
    with pytest.raises(ModelError) as caught:
        list(model.stream(long_request(2500), max_tokens=16))
    message = str(caught.value)
    assert model_server.url in message and f"holds {SERVER_CTX} tokens of context" in message
    assert model.n_ctx == SERVER_CTX  # the next question is built to fit


# ------------------------------------------------------------------ stop
def test_stop_mid_answer_hangs_up_and_the_server_stops_generating(model_server):
    model = EndpointModel(model_server.url, api_key=KEY, n_ctx=SERVER_CTX)
    messages = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
    hang_ups = model_server.log.read_text(errors="replace").count("Disconnected from client")
    received = []
    stopped_at = None
    for piece in model.stream(messages, max_tokens=400, temperature=0.0,
                              should_stop=lambda: len(received) >= 3):
        received.append(piece)
        if len(received) == 3:
            stopped_at = time.monotonic()
    assert len(received) == 3  # nothing after Stop
    assert time.monotonic() - stopped_at < 0.5
    # the server saw the connection close and gave up the rest of the 400 tokens
    deadline = time.monotonic() + 20
    while model_server.log.read_text(errors="replace").count("Disconnected from client") == hang_ups:
        assert time.monotonic() < deadline, "the server kept generating after Stop"
        time.sleep(0.1)


def test_a_busy_server_times_out_stops_at_once_and_then_answers(model_server, manual_library):
    """The server answers one request at a time and a request waits behind a running answer
    (it was started with --interrupt_requests False): hearing nothing for longer than the read
    timeout is reported, and Stop ends the wait at once."""
    busy = EndpointModel(model_server.url, api_key=KEY, n_ctx=SERVER_CTX)
    model = EndpointModel(model_server.url, api_key=KEY, n_ctx=SERVER_CTX, read_timeout=0.3)
    busy.load()
    model.load()  # before the server is busy: asking for its model list waits too
    release, answering = threading.Event(), threading.Event()

    def long_answer():
        for _piece in busy.stream([{"role": "user", "content": "Count from 1 to 1000, one number per line."}],
                                  max_tokens=1500, should_stop=release.is_set):
            answering.set()

    worker = threading.Thread(target=long_answer)
    worker.start()
    try:
        assert answering.wait(60), "the long answer never started"
        started = time.monotonic()
        with pytest.raises(ModelError) as caught:
            list(model.stream([{"role": "user", "content": "Say hello."}], max_tokens=8))
        assert str(caught.value) == f"The model server at {model_server.url} sent nothing for 0.3 s"
        assert time.monotonic() - started < 1.5
        model.read_timeout = 60
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        pieces = list(model.stream([{"role": "user", "content": "Say hello."}], max_tokens=8,
                                   should_stop=stop.is_set))
        assert pieces == [] and time.monotonic() - started < 0.2 + 0.5
        assert worker.is_alive()  # all along the other answer kept the server busy
    finally:
        release.set()
        worker.join(timeout=60)
    # the server is free again: the next question is answered
    stream = AnswerEngine(manual_library, model, max_answer_tokens=48).ask(QUESTION)
    assert "locker 12" in "".join(stream), stream.result.text


def test_an_answer_stopped_by_the_user_is_kept_as_stopped(model_server, manual_library):
    engine = AnswerEngine.from_settings(manual_library, server_settings(model_server.url))
    stream = engine.ask(QUESTION)
    after_stop = 0
    for n, _piece in enumerate(stream, start=1):
        if stream.stopped:
            after_stop += 1
        if n == 2:
            stream.stop()
    assert stream.result.stopped and after_stop == 0
    assert stream.result.answer_tokens == 2


def test_sprig_ask_answers_through_the_server_named_in_the_settings(model_server, sprig_home, tmp_path, embedder):
    from desktop.rag.library import Library

    doc = tmp_path / "pump-manual.txt"
    doc.write_text(MANUAL, encoding="utf-8")
    lib = Library(Paths(sprig_home), Settings(), embedder=embedder)
    assert not lib.index([doc]).failed
    lib.close()
    server_settings(model_server.url).save(Paths(sprig_home).settings)
    env = {**os.environ, "SPRIG_HOME": str(sprig_home)}
    ask = [sys.executable, "-m", "desktop.cli", "ask", QUESTION, "--json"]
    result = subprocess.run(ask, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "locker 12" in answer["answer"] and not answer["abstained"]
    assert answer["citations"][0]["path"] == str(doc)
    # a refused key: one line on stderr, Sprig's error exit code
    server_settings(model_server.url, key="stale").save(Paths(sprig_home).settings)
    result = subprocess.run(ask, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr == f"error: The model server at {model_server.url} refused the API key (HTTP 401)\n"


# ------------------------------------------------------------------ keys and failures
def test_a_wrong_or_missing_key_is_a_clear_error(model_server, tmp_path):
    paths = Paths(tmp_path)
    with pytest.raises(ModelError) as wrong:
        load_model(server_settings(model_server.url, key="not-the-key"), paths)
    assert str(wrong.value) == f"The model server at {model_server.url} refused the API key (HTTP 401)"
    with pytest.raises(ModelError) as missing:
        load_model(server_settings(model_server.url, key=""), paths)
    assert str(missing.value) == (f"The model server at {model_server.url} asks for an API key (HTTP 401): "
                                  "set one in Settings")
    # the settings dialog's Test button says what Sprig will use
    check = check_model_server(model_server.url, KEY)
    assert check.ok and "it counts tokens (llama-cpp-python /extras/tokenize)" in check.summary


def test_nothing_listening_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelError) as caught:
        load_model(server_settings(url), Paths(tmp_path))
    assert str(caught.value) == f"Nothing answers at {url} (connection refused): is the model server running?"


@pytest.fixture
def full_port():
    """A port whose listen queue is full: the kernel leaves a new connection unanswered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        held = []
        for _ in range(8):
            client = socket.socket()
            client.settimeout(0.3)
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                client.close()
                break
            held.append(client)
        else:
            pytest.skip("this kernel accepts every connection into the listen queue")
        yield port
        for client in held:
            client.close()


def test_no_connection_in_time_and_no_answer_in_time_are_clear_errors(full_port):
    url = f"http://127.0.0.1:{full_port}"
    model = EndpointModel(url, connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        model.load()
    assert str(caught.value) == f"The model server at {url} did not accept a connection within 0.5 s"
    assert time.monotonic() - started < 2
    with socket.socket() as silent:  # accepts (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ModelError) as caught:
            EndpointModel(url, read_timeout=0.5).load()
        assert str(caught.value) == f"The model server at {url} sent nothing for 0.5 s"


def test_a_bad_address_is_named():
    with pytest.raises(ModelError, match="“localhost:8080” is not an address"):
        EndpointModel("localhost:8080")


# ------------------------------------------------------------------ a server without a tokenizer
class NoTokenizer(BaseHTTPRequestHandler):
    """A stand-in, not llama.cpp: the least an OpenAI-compatible server offers (a model list and
    streamed chat completions, no tokenizer, no /props), to check the local token estimate."""

    protocol_version = "HTTP/1.1"
    bodies: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/v1/models":
            return self.reply(200, {"object": "list", "data": [{"id": "tiny-model", "object": "model"}]})
        return self.reply(404, {"error": {"message": "Not Found"}})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": "Not Found"}})
        self.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for word in ["The ", "impeller ", "is ", "in ", "locker ", "12 [1]."]:
            chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b": a comment line, ignored\n\ndata: [DONE]\n\n")
        self.close_connection = True

    def reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_a_server_without_a_tokenizer_gets_a_local_over_estimate(manual_library):
    NoTokenizer.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoTokenizer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        model = EndpointModel(url)
        model.load()
        assert model.tokenizer is None and model.name == f"tiny-model at 127.0.0.1:{server.server_address[1]}"
        assert model.count_text(MANUAL) == len(MANUAL) // CHARS_PER_TOKEN + 1
        assert model.truncate_text(MANUAL, 10) == MANUAL[: 10 * CHARS_PER_TOKEN]
        stream = AnswerEngine(manual_library, model, abstain_below=0.3).ask(QUESTION)
        assert "".join(stream) == "The impeller is in locker 12 [1]."
        assert stream.result.citations[0].passage.path.endswith("pump-manual.txt")
        assert NoTokenizer.bodies[0]["model"] == "tiny-model" and NoTokenizer.bodies[0]["stream"] is True
        assert check_model_server(url).summary.endswith("1 model (tiny-model)")  # nothing more to say
    finally:
        server.shutdown()
        server.server_close()
