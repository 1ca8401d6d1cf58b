"""Check a GGUF model in a throw-away process before the app loads it, and break crash loops.

llama.cpp's GGUF loader has a long history of heap overflows and calls ``abort()`` on some
bad files even in release builds, so a new or changed model file is first opened in a
child process: header check, a vocabulary-only load, and a check of its chat template
(rendered in the sandbox under a time limit). A crash, abort, hang or error there costs
the child only and becomes a plain-language error.

Crash-loop guard: ``model_load_guard`` writes a marker file before the model is loaded in
the app process and removes it when loading returns. If the app dies while loading, the
marker stays, and ``auto_load_allowed`` says no on the next start until the user asks for
the model again (Firefox's session-restore pattern; gpt4all#1166).

Typical start-up (the window calls these from a worker thread; nothing here imports Qt)::

    allowed, why = auto_load_allowed(paths)
    if allowed:
        model = open_local_model(path, paths)   # probe + guard + load; raises ModelError
    else:
        show(why)                               # the model loads when the user asks a question
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from desktop.child import TIMEOUT, ChildDied, child_process
from desktop.config import Paths, Settings, atomic_write_text
from desktop.errors import ModelError

PROBE_TIMEOUT_S = 30.0
TEMPLATE_TIME_LIMIT_S = 3.0


@dataclass
class ProbeResult:
    """What the probe found.

    ok: the file loads (it may still have a rejected chat template).
    error: the reason it cannot be used, for the user (empty when ok).
    template: "ok" (its chat template is used), "none" (it has none: plain prompt) or
    "rejected" (unsafe or broken: plain prompt; template_problem says why).
    """

    ok: bool
    error: str = ""
    name: str = ""
    template: str = "none"
    template_problem: str = ""
    seconds: float = 0.0

    def as_json(self) -> dict:
        return asdict(self)


def _probe_child(conn, path: str, template_time_limit_s: float) -> None:
    """Runs in the throw-away process."""
    try:
        _limit_memory(Path(path))
        from desktop.config import enforce_offline

        enforce_offline()
        from desktop.models.chat_template import prepare_chat_template
        from desktop.models.gguf import check_gguf

        check_gguf(path)
        conn.send(("stage", "load"))
        import contextlib
        import io

        from llama_cpp import Llama

        log = io.StringIO()  # llama.cpp says why a load failed only in its log
        try:
            with contextlib.redirect_stderr(log):
                llm = Llama(model_path=path, vocab_only=True, verbose=True)
        except Exception:  # noqa: BLE001 - reported with llama.cpp's own reason
            detail = _load_failure(log.getvalue())
            conn.send(("result", ProbeResult(False, (
                f"{Path(path).name} is damaged or incomplete ({detail}). "
                "Download it again or choose another model.") if detail else
                f"{Path(path).name} cannot be loaded; the file may be damaged.")))
            return
        meta = llm.metadata or {}
        name = meta.get("general.name") or Path(path).stem
        bos = llm.token_bos()
        eos = llm.token_eos()
        bos_text = llm.detokenize([bos], special=True).decode("utf-8", "replace") if bos >= 0 else ""
        eos_text = llm.detokenize([eos], special=True).decode("utf-8", "replace") if eos >= 0 else ""
        source = meta.get("tokenizer.chat_template")
        conn.send(("stage", "template"))
        template, problem = prepare_chat_template(source, bos_token=bos_text, eos_token=eos_text,
                                                  time_limit_s=template_time_limit_s)
        verdict = "none" if source is None else ("ok" if template is not None else "rejected")
        conn.send(("result", ProbeResult(True, "", name, verdict, problem)))
    except ModelError as exc:
        conn.send(("result", ProbeResult(False, str(exc))))
    except BaseException as exc:  # noqa: BLE001 - llama.cpp reports failures as ValueError etc.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        conn.send(("result", ProbeResult(False, f"{Path(path).name} cannot be loaded ({first}).")))


def _load_failure(log: str) -> str:
    """The most specific reason in llama.cpp's log, without the function-name prefixes."""
    reasons = []
    for line in log.splitlines():
        low = line.lower()
        if ("error" in low or "failed" in low) and "failed to load model" not in low:
            reasons.append(line.split("error loading model:")[-1].split(": ", 1)[-1].strip())
    return reasons[0][:200] if reasons else ""


def _limit_memory(path: Path) -> None:
    """A forged file must not take the machine's memory down with the probe."""
    try:
        import resource

        size = path.stat().st_size if path.exists() else 0
        cap = max(4 << 30, 2 * size + (2 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass


def probe_model(path: str | os.PathLike, timeout_s: float = PROBE_TIMEOUT_S,
                template_time_limit_s: float = TEMPLATE_TIME_LIMIT_S) -> ProbeResult:
    """Probe ``path`` in a child process. Never raises; never crashes the caller."""
    started = time.monotonic()
    path = Path(path).expanduser()
    name = path.name
    stage = "check"
    result: ProbeResult | None = None
    with child_process(_probe_child, (str(path), template_time_limit_s), "sprig-model-probe") as job:
        deadline = started + timeout_s
        while result is None:
            try:
                message = job.receive(deadline - time.monotonic())
            except ChildDied as died:
                result = ProbeResult(False, _crash_message(name, died.exitcode))
                break
            if message is TIMEOUT:
                if stage == "template":
                    result = ProbeResult(True, "", path.stem, "rejected",
                                         f"the chat template takes too long to render (over {timeout_s:g} s)")
                else:
                    result = ProbeResult(False, f"{name} took longer than {timeout_s:g} s to open; "
                                                "the file may be damaged.")
                break
            kind, value = message
            if kind == "stage":
                stage = value
            else:
                result = value
    result.seconds = time.monotonic() - started
    return result


def _crash_message(name: str, code: int | None) -> str:
    how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
    return (f"{name} is damaged: opening it crashed the checker ({how}). "
            "Download the model again or choose another one.")


# ------------------------------------------------------------------ crash-loop guard
def last_crash(paths: Paths) -> dict | None:
    """The marker of a model load that never returned ({"model", "started", "pid"}), if any."""
    try:
        return json.loads(paths.crash_marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"model": "", "started": 0, "pid": 0}  # a marker we cannot read still counts


def auto_load_allowed(paths: Paths, settings: Settings | None = None) -> tuple[bool, str]:
    """(may the app load the model on start without being asked, the reason if not)."""
    if settings is not None and not settings.auto_load_model:
        return False, "Loading the model at start is turned off in Settings."
    crash = last_crash(paths)
    if crash is not None:
        model = Path(crash.get("model") or "the model").name
        return False, (f"Sprig closed unexpectedly while loading {model} last time, so it was not "
                       "loaded automatically. Load it from the chat panel when you are ready.")
    return True, ""


@contextmanager
def model_load_guard(paths: Paths, model_path: str | os.PathLike) -> Iterator[None]:
    """Mark a model load in progress; the mark survives only if the process dies inside.

    A Python exception (a clear ModelError) is not a crash: the mark is removed and the
    exception propagates.
    """
    atomic_write_text(paths.crash_marker, json.dumps(
        {"model": str(model_path), "started": time.time(), "pid": os.getpid()}))
    try:
        yield
    finally:
        clear_crash_marker(paths)


def clear_crash_marker(paths: Paths) -> None:
    """Forget an earlier crash (the user asked to load the model again)."""
    try:
        paths.crash_marker.unlink()
    except FileNotFoundError:
        pass


def open_local_model(path: str | os.PathLike, paths: Paths, n_ctx: int = 4096,
                     probe_timeout_s: float = PROBE_TIMEOUT_S):
    """Probe, then load a GGUF in this process under the crash-loop guard.

    Returns a loaded ``LocalModel`` (``template_problem`` says if its chat template was
    rejected and the plain prompt is used). Raises ModelError with a clear message if the
    file is missing or damaged.
    """
    from desktop.models.llm import LocalModel

    result = probe_model(path, probe_timeout_s)
    if not result.ok:
        raise ModelError(result.error)
    model = LocalModel(path, n_ctx=n_ctx)
    with model_load_guard(paths, path):
        model.load()
    return model
