"""A chat model on an OpenAI-compatible server (``model_endpoint``), spoken to with the stdlib.

Tested against llama.cpp's server as packaged for Python (``python -m llama_cpp.server``);
anything that serves ``POST /v1/chat/completions`` with server-sent events works the same way.

* Address: ``http://host:port`` or ``http://host:port/v1`` (a path before ``/v1`` is kept, for a
  server behind a reverse proxy).
* Authentication: ``Authorization: Bearer <model_api_key>`` on every request, when a key is set.
* Timeouts: one for opening the connection (``connect_timeout``), one for the gap between two
  pieces of the answer (``read_timeout``, which must cover the server's prompt processing).
  Every failure is a ``ModelError`` that names the address and says what happened.
* Stop: the request runs on a reader thread and the caller waits on a queue, so
  ``should_stop()`` is seen within ``POLL_S`` even while the server is still reading the prompt;
  the connection is then closed, which tells the server to stop generating.
* Token budget: counted by the server when it offers a tokenizer (llama-cpp-python's
  ``/extras/tokenize``, llama.cpp ``llama-server``'s ``/tokenize``); otherwise estimated
  locally at 3 characters a token, an over-estimate for English. The chat template's own
  tokens are not visible through this API, so ``count`` adds ``MESSAGE_OVERHEAD`` a message
  and ``PROMPT_OVERHEAD`` once. Measured against llama_cpp.server's own count: Qwen's ChatML
  adds 13 tokens to a system + user prompt, the Llama-2 format it falls back to for Gemma
  270M adds 15; a template's default system prompt, added when a prompt has none (Qwen's
  is 17 tokens), also fits. The server's context size is read from ``/props`` where it is
  offered (llama-server); llama-cpp-python does not say, so a prompt longer than its
  ``--n_ctx`` is reported as such and the limit adopted for the next question.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from desktop.errors import ModelError
from desktop.models.llm import ChatModel, Message

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
POLL_S = 0.05  # how often a waiting stream looks at should_stop()
CHARS_PER_TOKEN = 3  # the local estimate: English averages ~4 characters a token
MESSAGE_OVERHEAD = 8  # template tokens around each message (role markers, separators)
PROMPT_OVERHEAD = 24  # template tokens once per prompt (BOS, the assistant's opening, a default system prompt)
ERROR_BODY_BYTES = 65536
_COUNT_CACHE = 2048


@dataclass(frozen=True)
class TokenizerApi:
    """One server family's tokenize/detokenize endpoints (paths below the server's root)."""

    name: str
    tokenize: str
    text_key: str  # the request field that holds the text
    detokenize: str
    text_out: str  # the response field that holds detokenized text


TOKENIZER_APIS = (
    TokenizerApi("llama-cpp-python /extras/tokenize", "/extras/tokenize", "input", "/extras/detokenize", "text"),
    TokenizerApi("llama.cpp /tokenize", "/tokenize", "content", "/detokenize", "content"),
)
ESTIMATE = "estimated locally (the server offers no tokenizer)"


@dataclass(frozen=True)
class ServerInfo:
    """What ``probe`` learnt about a server."""

    models: list[str]
    tokenizer: TokenizerApi | None
    n_ctx: int | None  # the server's context size, where it says


class _HttpFailure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class EndpointModel(ChatModel):
    """An OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(self, url: str, model: str = "", n_ctx: int = 4096, api_key: str = "",
                 connect_timeout: float = CONNECT_TIMEOUT_S, read_timeout: float = READ_TIMEOUT_S):
        self.url = url.strip().rstrip("/")
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ModelError(f"The model server address “{url}” is not an address: write it as http://host:port")
        try:
            self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError as exc:
            raise ModelError(f"The model server address “{url}” has an invalid port number") from exc
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        root = parsed.path.rstrip("/")
        self._root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model = model
        self.n_ctx = n_ctx
        self.api_key = (api_key or os.environ.get("SPRIG_ENDPOINT_KEY", "")).strip()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.name = f"server at {self.where}"
        self.has_chat_template = True  # the server applies its model's template
        self.tokenizer: TokenizerApi | None = None
        self._bos_tokens = 0  # tokens the server's tokenizer adds to any text (a BOS)
        self._loaded = False
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    # ---------------------------------------------------------------- addresses
    @property
    def where(self) -> str:
        return f"{self._host}:{self._port}"

    def _v1(self, path: str) -> str:
        return self._root + "/v1" + path

    # ---------------------------------------------------------------- loading
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Ask the server what it serves, how it counts tokens and how long its context is."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            info = self.probe()
            if not self.model and info.models:
                self.model = info.models[0]
            self.tokenizer = info.tokenizer
            if info.tokenizer is not None:
                self._bos_tokens = len(self._tokenize(""))
            if info.n_ctx:
                self.n_ctx = min(self.n_ctx, info.n_ctx)
            if self.model:
                label = re.split(r"[\\/]", self.model.rstrip("/\\"))[-1] or self.model  # a path: its file name
                self.name = f"{label} at {self.where}"
            self._loaded = True

    def probe(self) -> ServerInfo:
        """``GET /v1/models``, a tokenizer endpoint, ``GET /props``; raises ``ModelError``
        when the server cannot be reached or refuses the key."""
        try:
            models = self._request("GET", self._v1("/models"))
            entries = models.get("data") if isinstance(models, dict) else None
            ids = [str(m["id"]) for m in entries or [] if isinstance(m, dict) and m.get("id")]
        except _HttpFailure as exc:
            if exc.status in (401, 403):
                raise ModelError(self._refused(exc.status)) from exc
            ids = []  # a server without a model list still answers chats
        tokenizer = None
        for api in TOKENIZER_APIS:
            try:
                found = self._request("POST", self._root + api.tokenize, self._with_model({api.text_key: ""}))
            except _HttpFailure:
                continue
            if isinstance(found, dict) and isinstance(found.get("tokens"), list):
                tokenizer = api
                break
        try:
            props = self._request("GET", self._root + "/props")
        except _HttpFailure:
            props = None
        return ServerInfo(ids, tokenizer, _props_n_ctx(props))

    def close(self) -> None:
        with self._lock:
            self._loaded = False
            self._counts.clear()

    # ---------------------------------------------------------------- tokens
    def _tokenize(self, text: str) -> list[int]:
        api = self.tokenizer
        assert api is not None
        try:
            data = self._request("POST", self._root + api.tokenize, self._with_model({api.text_key: text}))
        except _HttpFailure as exc:
            raise ModelError(f"The model server at {self.url} could not count tokens: {exc.message}") from exc
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise ModelError(f"The model server at {self.url} answered a tokenize request without tokens")
        return tokens

    def count_text(self, text: str) -> int:
        if not text:
            return 0
        self.load()
        if self.tokenizer is None:
            return _estimate(text)
        cached = self._counts.get(text)
        if cached is None:
            cached = max(0, len(self._tokenize(text)) - self._bos_tokens)
            if len(self._counts) >= _COUNT_CACHE:
                self._counts.clear()
            self._counts[text] = cached
        return cached

    def truncate_text(self, text: str, max_tokens: int) -> str:
        max_tokens = max(0, max_tokens)
        self.load()
        if self.tokenizer is None:
            return text[: max_tokens * CHARS_PER_TOKEN]
        tokens = self._tokenize(text)[self._bos_tokens :]
        if len(tokens) <= max_tokens:
            return text
        api = self.tokenizer
        for keep in range(max_tokens, max(-1, max_tokens - 4), -1):
            # a cut inside a multi-byte character is refused by some servers: cut one earlier
            try:
                data = self._request("POST", self._root + api.detokenize, self._with_model({"tokens": tokens[:keep]}))
            except _HttpFailure:
                continue
            if isinstance(data, dict) and isinstance(data.get(api.text_out), str):
                return data[api.text_out]
        return text[: max_tokens * CHARS_PER_TOKEN]

    def count(self, messages: list[Message]) -> int:
        return (sum(self.count_text(m["content"]) + MESSAGE_OVERHEAD for m in messages)
                + PROMPT_OVERHEAD + self._bos_tokens)

    # ---------------------------------------------------------------- generation
    def _with_model(self, body: dict) -> dict:
        return {**body, "model": self.model} if self.model else body

    def _chat_body(self, messages: list[Message], max_tokens: int, temperature: float, stream: bool) -> dict:
        return self._with_model({"messages": messages, "max_tokens": max_tokens,
                                 "temperature": temperature, "stream": stream})

    def stream(self, messages: list[Message], max_tokens: int = 256, temperature: float = 0.2,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
        self.load()
        if should_stop():
            return
        call = _Call(self, self._chat_body(messages, max_tokens, temperature, True))
        call.start()
        finished = False  # [DONE] or a finish_reason came
        said = False
        try:
            while not should_stop():
                try:
                    kind, value = call.events.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if kind == "error":
                    raise value
                if kind == "finish":
                    finished = True
                    continue
                if kind in ("done", "end"):
                    finished = finished or kind == "done"
                    break
                said = True
                yield value
        finally:
            call.cancel()
        if finished or should_stop():
            return
        if not said:
            self._explain_silent_end(messages)
        raise ModelError(f"The model server at {self.url} closed the connection before the answer was finished")

    def _explain_silent_end(self, messages: list[Message]) -> None:
        """The stream ended with neither a word nor an error. llama-cpp-python does that when
        the prompt is longer than its context: the same request without streaming says so."""
        try:
            self._request("POST", self._v1("/chat/completions"), self._chat_body(messages, 1, 0.0, False))
        except _HttpFailure as exc:
            raise ModelError(self._http_message(exc)) from exc
        raise ModelError(f"The model server at {self.url} ended the answer without a word or an error")

    # ---------------------------------------------------------------- HTTP
    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def connect(self) -> tuple[http.client.HTTPConnection, socket.socket]:
        """An open connection (within ``connect_timeout``) whose reads wait ``read_timeout``."""
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.connect_timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ModelError(self._unreachable(exc)) from exc
        conn.sock.settimeout(self.read_timeout)
        return conn, conn.sock

    def send(self, conn: http.client.HTTPConnection, method: str, path: str,
             payload: dict | None) -> http.client.HTTPResponse:
        """Send one request; a status other than 200 raises ``_HttpFailure`` with the server's words."""
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        try:
            conn.request(method, path, body=body, headers=self._headers(body))
            response = conn.getresponse()
        except TimeoutError as exc:
            raise ModelError(self._silent()) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ModelError(f"The model server at {self.url} broke off the connection: {_why(exc)}") from exc
        if response.status != 200:
            raw = _read_quietly(response)
            raise _HttpFailure(response.status, _server_words(raw) or response.reason or "")
        return response

    def _request(self, method: str, path: str, payload: dict | None = None):
        conn, _sock = self.connect()
        try:
            response = self.send(conn, method, path, payload)
            try:
                raw = response.read(16_000_000)
            except TimeoutError as exc:
                raise ModelError(self._silent()) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise ModelError(f"The model server at {self.url} broke off the connection: {_why(exc)}") from exc
        finally:
            conn.close()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _HttpFailure(200, f"not JSON from {path}") from exc

    # ---------------------------------------------------------------- messages
    def _unreachable(self, exc: BaseException) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return f"Nothing answers at {self.url} (connection refused): is the model server running?"
        if isinstance(exc, TimeoutError):
            return f"The model server at {self.url} did not accept a connection within {self.connect_timeout:g} s"
        if isinstance(exc, socket.gaierror):
            return f"The model server's host “{self._host}” is unknown (the name does not resolve): {self.url}"
        if isinstance(exc, ssl.SSLError):
            return f"The secure connection to the model server at {self.url} failed: {getattr(exc, 'reason', None) or exc}"
        return f"Cannot reach the model server at {self.url}: {_why(exc)}"

    def _silent(self) -> str:
        return f"The model server at {self.url} sent nothing for {self.read_timeout:g} s"

    def _refused(self, status: int) -> str:
        if self.api_key:
            return f"The model server at {self.url} refused the API key (HTTP {status})"
        return f"The model server at {self.url} asks for an API key (HTTP {status}): set one in Settings"

    def _http_message(self, exc: _HttpFailure) -> str:
        if exc.status in (401, 403):
            return self._refused(exc.status)
        limit = _context_limit(exc.message)
        if limit:
            before = self.n_ctx
            self.n_ctx = min(self.n_ctx, limit)  # the next question is built to fit
            return (f"The model server at {self.url} holds {limit} tokens of context, fewer than this "
                    f"question needed (Sprig assumed {before}): Sprig now keeps prompts within {limit} "
                    f"tokens; or start the server with a larger context (--n_ctx)")
        if exc.status == 404:
            return (f"The model server at {self.url} has no chat endpoint ({self._v1('/chat/completions')}, "
                    "HTTP 404): is it an OpenAI-compatible server?")
        return f"The model server at {self.url} answered HTTP {exc.status}: {exc.message}"


class _Call:
    """One streamed chat request on a reader thread; events go to ``events``:
    ("piece", text), ("done", None) at ``[DONE]``, ("end", None) when the stream closes,
    ("error", ModelError)."""

    def __init__(self, model: EndpointModel, body: dict):
        self.model = model
        self.body = body
        self.events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="model-server-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Hang up: the server sees the closed connection and stops generating. The reader
        thread is not waited for: it ends by itself (a connection still being opened is
        closed as soon as it opens)."""
        with self._lock:
            self._cancelled = True
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        model = self.model
        conn = None
        try:
            conn, sock = model.connect()
            with self._lock:
                if self._cancelled:
                    return
                self._sock = sock
            try:
                response = model.send(conn, "POST", model._v1("/chat/completions"), self.body)
            except _HttpFailure as exc:
                raise ModelError(model._http_message(exc)) from exc
            self._read(response)
        except ModelError as exc:
            if not self._cancelled:
                self.events.put(("error", exc))
        except Exception as exc:  # noqa: BLE001 - reported to the waiting caller, never lost
            if not self._cancelled:
                self.events.put(("error", ModelError(f"The model server at {model.url} failed: {_why(exc)}")))
        finally:
            if conn is not None:
                conn.close()

    def _read(self, response: http.client.HTTPResponse) -> None:
        model = self.model
        data: list[str] = []
        while True:
            try:
                raw = response.readline(1_000_000)
            except TimeoutError as exc:
                raise ModelError(model._silent()) from exc
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if self._cancelled:
                    return
                raise ModelError(f"The model server at {model.url} broke off the answer: {_why(exc)}") from exc
            if not raw:
                self.events.put(("end", None))
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
                joined = "\n".join(data)
                if joined == "[DONE]":
                    self.events.put(("done", None))
                    return
                try:
                    event = json.loads(joined)
                except ValueError:
                    continue  # an event split over several data lines: wait for the rest
                data = []
                self._event(event)
            elif not line:
                data = []  # the end of an event (or of one that never parsed)
            # other lines are SSE comments (": ping") and fields Sprig does not use

    def _event(self, event) -> None:
        if not isinstance(event, dict):
            return
        if event.get("error"):
            error = event["error"]
            words = error.get("message") if isinstance(error, dict) else str(error)
            raise ModelError(self.model._http_message(_HttpFailure(500, str(words))))
        choices = event.get("choices") or []
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
            if piece:
                self.events.put(("piece", piece))
            if choices[0].get("finish_reason"):
                self.events.put(("finish", None))


# ------------------------------------------------------------------ helpers
def _props_n_ctx(props) -> int | None:
    """llama-server's context size from ``GET /props`` (top level or its generation defaults)."""
    if not isinstance(props, dict):
        return None
    defaults = props.get("default_generation_settings")
    for value in ((defaults or {}).get("n_ctx") if isinstance(defaults, dict) else None, props.get("n_ctx")):
        if isinstance(value, int) and value > 0:
            return value
    return None


def _estimate(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _read_quietly(response: http.client.HTTPResponse) -> bytes:
    try:
        return response.read(ERROR_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def _server_words(raw: bytes) -> str:
    """The error message in an error body: OpenAI's {"error": {"message"}}, FastAPI's
    {"detail"}, or the text itself."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or ""
            if error.get("n_ctx"):  # llama-server says the limit in a field of its own
                message += f" (maximum context length is {error['n_ctx']} tokens)"
            return str(message)
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return data[key]
    return text[:300]


_LIMIT = re.compile(r"maximum context length is (\d+)|context window of (\d+)")


def _context_limit(message: str) -> int | None:
    match = _LIMIT.search(message or "")
    if not match:
        return None
    return int(match.group(1) or match.group(2))
