"""Typed settings and paths: the one place that knows where Sprig keeps its files.

The data folder is the platform's user data folder (platformdirs) unless the
environment variable ``SPRIG_HOME`` names another one (every test uses a temp one).
Model files (assembled GGUFs, the built embedder) live in its ``models`` folder unless
``SPRIG_MODELS`` names a folder that several data folders share.
Settings are a dataclass saved as JSON, written atomically (temp file, fsync, rename),
so a crash never leaves a torn settings file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from desktop import APP_NAME, PRIVACY_ENV

OFFLINE_ENV = {
    **PRIVACY_ENV,
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def enforce_offline() -> None:
    """Make every library we drive stay off the network (called before any heavy import)."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


def record_native_crashes(paths: Paths) -> None:
    """A native crash of this process writes its Python traceback to ``paths.crash_log``.

    Besides helping a bug report, this is how the next start tells a crash (which may recur
    on the same document) from a kill or a power cut (which leave nothing).
    """
    import faulthandler

    try:
        handle = open(paths.crash_log, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    except OSError:
        return
    faulthandler.enable(file=handle, all_threads=True)
    _CRASH_LOGS.append(handle)


_CRASH_LOGS: list = []


MODELS_ENV = "SPRIG_MODELS"  # a models folder shared by several data folders (each is ~1 GB)


def data_dir() -> Path:
    """The user data folder (created on first use)."""
    override = os.environ.get("SPRIG_HOME")
    if override:
        path = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite3"

    @property
    def catalog_backup(self) -> Path:
        """The last good copy of the catalog, refreshed after each indexing job that changed it."""
        return self.root / "catalog.sqlite3.bak"

    @property
    def chats(self) -> Path:
        return self.root / "chats.sqlite3"

    @property
    def chroma(self) -> Path:
        return self.root / "chroma"

    @property
    def models(self) -> Path:
        shared = os.environ.get(MODELS_ENV)
        return Path(shared).expanduser() if shared else self.root / "models"

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def ocr(self) -> Path:
        """What OCR read on scanned PDF pages: text and line boxes, one file per document content."""
        return self.root / "ocr"

    @property
    def lock(self) -> Path:
        return self.root / "sprig.lock"

    @property
    def crash_log(self) -> Path:
        """Where a native crash (SIGSEGV, SIGABRT...) writes its traceback (faulthandler)."""
        return self.root / "crash.log"

    @property
    def crash_marker(self) -> Path:
        return self.root / "model-loading.marker"

    @classmethod
    def default(cls) -> Paths:
        return cls(data_dir())


def _limits(lo, hi):
    return {"range": (lo, hi)}


@dataclass
class Settings:
    """Everything a user can change, with the defaults a laptop CPU wants.

    ``load`` checks every field: a value of the wrong type falls back to its default and
    a number out of range is brought into range, each with a message in ``problems``; a
    file that is not valid JSON is moved aside (never overwritten) and the defaults used.
    """

    # chat model: "bundled-qwen" (default), "bundled-gemma", or a path to a GGUF file
    model: str = "bundled-qwen"
    # an OpenAI-compatible endpoint (llama.cpp's server); empty = run the model in-process
    model_endpoint: str = ""
    # sent as "Authorization: Bearer KEY" to model_endpoint (empty = none)
    model_api_key: str = ""
    # greedy decoding: measured 29/40 vs 25/40 at 0.2 on SQuAD answers (bench notes in README)
    temperature: float = field(default=0.0, metadata=_limits(0.0, 2.0))
    context_size: int = field(default=4096, metadata=_limits(512, 32768))
    max_answer_tokens: int = field(default=384, metadata=_limits(16, 4096))
    passages_per_answer: int = field(default=4, metadata=_limits(1, 20))
    # retrieval
    chunk_tokens: int = field(default=128, metadata=_limits(32, 256))
    # a short overlap: chunks end at a paragraph or sentence break, and the evidence step extends
    # a passage cut mid-sentence to the whole sentence; 24 tokens cost 12% more chunks to embed
    # for no recall, none lost a filing page in tests/rag (README, Quality: chunk size)
    chunk_overlap: int = field(default=8, metadata=_limits(0, 128))
    # answerable probability (desktop.rag.abstain, calibrated by bench/quality.py --calibrate)
    # below which Sprig says the documents don't hold the answer, without running the model
    abstain_below: float = field(default=0.25, metadata=_limits(0.0, 1.0))
    allow_general_knowledge: bool = False
    # store: empty = embedded Chroma in the data folder; "http://host:port" = a Chroma server
    chroma_url: str = ""
    # sent as "Authorization: Bearer TOKEN" to chroma_url (empty = none)
    chroma_token: str = ""
    # how this PC signs what it adds to a shared library (empty = user@host)
    library_name: str = ""
    system_prompts: dict[str, str] = field(default_factory=dict)
    # parser limits
    parse_timeout_s: float = field(default=120.0, metadata=_limits(5.0, 3600.0))
    parse_memory_mb: int = field(default=2048, metadata=_limits(256, 65536))
    max_file_mb: int = field(default=200, metadata=_limits(1, 4096))
    # window state
    last_collection: str = "default"
    # QWidget.saveGeometry() of the main window, base64; empty = the default size
    window_geometry: str = ""
    # pane sizes in pixels: "side,chat/chats,documents"; empty = the defaults
    splitter_sizes: str = ""
    auto_load_model: bool = True
    # not saved: what ``load`` had to correct, for the caller to show
    problems: list[str] = field(default_factory=list, repr=False, compare=False,
                                metadata={"transient": True})

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or Paths.default().settings
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            settings = cls()
            settings.problems.append(f"{path.name} could not be read ({exc}); using the defaults")
            return settings
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            kept = _move_aside(path, "unreadable")
            settings = cls()
            settings.problems.append(
                f"{path.name} is not valid settings ({exc}); it was kept as {kept.name} "
                "and the defaults are used")
            return settings
        settings, problems = cls.validate(raw)
        if problems:
            kept = _copy_aside(path, "before-fix")
            problems.append(f"the file as it was is kept as {kept.name}")
        settings.problems.extend(problems)
        return settings

    @classmethod
    def validate(cls, raw: dict) -> tuple[Settings, list[str]]:
        """Settings from a dict, field by field; (settings, what was corrected)."""
        values: dict = {}
        problems: list[str] = []
        for f in fields(cls):
            if f.metadata.get("transient") or f.name not in raw:
                continue
            default = f.default if f.default is not MISSING else f.default_factory()
            value, problem = _check_field(f.name, raw[f.name], default, f.metadata.get("range"))
            if problem:
                problems.append(problem)
            values[f.name] = value
        settings = cls(**values)
        if settings.chunk_overlap >= settings.chunk_tokens // 2 + 1:
            fixed = settings.chunk_tokens // 4
            problems.append(f"chunk_overlap {settings.chunk_overlap} must be under half of chunk_tokens; "
                            f"using {fixed}")
            settings.chunk_overlap = fixed
        return settings, problems

    def save(self, path: Path | None = None) -> None:
        path = path or Paths.default().settings
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("transient")}
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def _check_field(name: str, value, default, limits):
    """(value to use, problem or None) for one settings field."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return default, f"'{name}' must be true or false; using {json.dumps(default)}"
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return default, f"'{name}' must be a number; using {default}"
        if kind is int and float(value) != int(value):
            return default, f"'{name}' must be a whole number; using {default}"
        value = kind(value)
        lo, hi = limits if limits else (None, None)
        if lo is not None and not lo <= value <= hi:
            fixed = kind(min(max(value, lo), hi))
            return fixed, f"'{name}' {value} is outside {lo}..{hi}; using {fixed}"
        return value, None
    if kind is str:
        if isinstance(value, str):
            return value, None
        return default, f"'{name}' must be text; using {json.dumps(default)}"
    if kind is dict:
        if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return value, None
        return default, f"'{name}' must map names to text; it was ignored"
    return default, None


def aside_name(path: Path, label: str) -> Path:
    """A free name beside ``path`` for keeping it: ``NAME.LABEL-YYYYmmdd-HHMMSS[-n]``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
    return target


def _move_aside(path: Path, label: str) -> Path:
    target = aside_name(path, label)
    os.replace(path, target)
    return target


def _copy_aside(path: Path, label: str) -> Path:
    target = aside_name(path, label)
    shutil.copy2(path, target)
    return target


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
