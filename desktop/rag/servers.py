"""Checking a model server and a Chroma server before Sprig is pointed at them.

Each check makes a few plain HTTP requests (GETs, and for a model server a POST that asks
it to tokenize an empty text; no server library is imported) and says in one
sentence what it found (the server's models; Chroma's version, tenant and collections) or
why it could not: not an address, unknown host, nothing listening, no answer in time,
refused key or token, another HTTP status, or an answer that is not the expected API.
Nothing here runs unless the user asks for it: Sprig itself stays offline.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServerCheck:
    ok: bool
    summary: str  # one sentence for the user
    found: list[str] = field(default_factory=list)  # model ids, Chroma facts


class _Failed(Exception):
    """One request went wrong; the message is the user's sentence."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def address_problem(url: str) -> str:
    """Why ``url`` cannot name a server, or ""."""
    url = url.strip()
    if not url:
        return "Enter the server's address, e.g. http://127.0.0.1:8080"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"“{url}” is not a server address: write it as http://host:port"
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        return f"“{url}” has an invalid port number"
    return ""


def _where(url: str) -> str:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.hostname}:{port}"


def _get_json(url: str, headers: dict[str, str], timeout_s: float):
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    where = _where(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the user's URL
            body = response.read(2_000_000)
    except urllib.error.HTTPError as exc:
        raise _Failed(f"HTTP {exc.code} {exc.reason} from {url}", exc.code) from exc
    except urllib.error.URLError as exc:
        raise _Failed(_reason(exc.reason, where, timeout_s)) from exc
    except (TimeoutError, OSError) as exc:  # a timeout or a reset while reading the answer
        raise _Failed(_reason(exc, where, timeout_s)) from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _Failed(f"{where} answered {url}, but not with JSON") from exc


def _reason(reason, where: str, timeout_s: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return f"Nothing answers at {where} (connection refused): is the server running?"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"No answer from {where} within {timeout_s:g} s"
    if isinstance(reason, socket.gaierror):
        return f"Unknown host “{where.rsplit(':', 1)[0]}” (the name does not resolve)"
    if isinstance(reason, ssl.SSLError):
        return f"Secure connection to {where} failed: {getattr(reason, 'reason', None) or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return f"Cannot reach {where}: {reason.strerror}"
    return f"Cannot reach {where}: {reason}"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret.strip()}"} if secret.strip() else {}


def _refused(status: int | None, secret: str, what: str) -> str | None:
    if status in (401, 403):
        if secret.strip():
            return f"The server refused the {what} (HTTP {status})"
        return f"The server asks for a {what} (HTTP {status}): enter one"
    return None


# ------------------------------------------------------------------ model server
def models_url(url: str) -> str:
    """``GET`` address of the model list (the same ``/v1`` rule as ``EndpointModel``)."""
    base = url.strip().rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + "/models"


def check_model_server(url: str, api_key: str = "", timeout_s: float = CHECK_TIMEOUT_S) -> ServerCheck:
    """Ask an OpenAI-compatible server for its models (``GET /v1/models``)."""
    problem = address_problem(url)
    if problem:
        return ServerCheck(False, problem)
    target = models_url(url)
    try:
        data = _get_json(target, _bearer(api_key), timeout_s)
    except _Failed as exc:
        refused = _refused(exc.status, api_key, "key")
        if exc.status == 404:
            return ServerCheck(False, f"{exc}: is this an OpenAI-compatible server?")
        return ServerCheck(False, refused or str(exc))
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return ServerCheck(False, f"{_where(target)} answered, but not with an OpenAI-style model list")
    models = [str(m.get("id")) for m in entries if isinstance(m, dict) and m.get("id")]
    if not models:
        return ServerCheck(True, f"Connected to {_where(target)}, but it lists no models", [])
    names = ", ".join(models[:5]) + (f" and {len(models) - 5} more" if len(models) > 5 else "")
    noun = "model" if len(models) == 1 else "models"
    extras = model_server_extras(url, api_key, timeout_s)
    summary = f"Connected to {_where(target)}: {len(models)} {noun} ({names})"
    return ServerCheck(True, summary + ("; " + ", ".join(extras) if extras else ""), models + extras)


def model_server_extras(url: str, api_key: str = "", timeout_s: float = CHECK_TIMEOUT_S) -> list[str]:
    """What the server offers beyond the model list that Sprig uses: a tokenizer (prompts are
    then counted in the model's own tokens, not estimated) and its context size, where it
    says (llama.cpp's llama-server does, llama-cpp-python does not). Empty when it offers
    neither or cannot be asked."""
    from desktop.errors import ModelError
    from desktop.models.endpoint import EndpointModel

    try:
        info = EndpointModel(url, api_key=api_key, connect_timeout=timeout_s, read_timeout=timeout_s).probe()
    except ModelError:
        return []
    found = []
    if info.tokenizer is not None:
        found.append(f"it counts tokens ({info.tokenizer.name})")
    if info.n_ctx:
        found.append(f"context {info.n_ctx} tokens")
    return found


# ------------------------------------------------------------------ Chroma server
def check_chroma_server(url: str, token: str = "", timeout_s: float = CHECK_TIMEOUT_S) -> ServerCheck:
    """Heartbeat and version of a Chroma server (API v2), then who the token is and how many
    collections its database holds, where the server says so."""
    problem = address_problem(url)
    if problem:
        return ServerCheck(False, problem)
    base = url.strip().rstrip("/")
    headers = _bearer(token)
    try:
        beat = _get_json(base + "/api/v2/heartbeat", headers, timeout_s)
    except _Failed as exc:
        if exc.status == 404:
            return ServerCheck(False, f"{exc}: this is not a Chroma server of version 1.0 or later")
        return ServerCheck(False, _refused(exc.status, token, "token") or str(exc))
    if not isinstance(beat, dict) or not any("heartbeat" in key for key in beat):
        return ServerCheck(False, f"{_where(base)} answered, but not as a Chroma server (no heartbeat)")
    found = []
    try:
        version = _get_json(base + "/api/v2/version", headers, timeout_s)
        found.append(f"Chroma {version}")
    except _Failed:
        found.append("Chroma (version not given)")
    try:
        identity = _get_json(base + "/api/v2/auth/identity", headers, timeout_s)
    except _Failed as exc:
        refused = _refused(exc.status, token, "token")
        if refused:
            return ServerCheck(False, f"{found[0]} at {_where(base)} answers, but: {refused}", found)
        identity = None
    if isinstance(identity, dict) and identity.get("tenant"):
        tenant = str(identity["tenant"])
        databases = [str(d) for d in identity.get("databases") or []]
        database = databases[0] if databases else "default_database"
        found.append(f"tenant {tenant}, database {database}")
        try:
            count = _get_json(f"{base}/api/v2/tenants/{quote(tenant)}/databases/{quote(database)}"
                              "/collections_count", headers, timeout_s)
            if isinstance(count, int):
                found.append(f"{count} collection{'s' if count != 1 else ''}")
        except _Failed:
            pass
    return ServerCheck(True, f"Connected to {_where(base)}: " + ", ".join(found), found)
