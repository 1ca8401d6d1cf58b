"""Typed settings and paths: the one place that knows where Sprig keeps its files.

The data folder is the platform's user data folder (platformdirs) unless the
environment variable ``SPRIG_HOME`` names another one (every test uses a temp one).
Settings are a dataclass saved as JSON, written atomically (temp file, fsync, rename),
so a crash never leaves a torn settings file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from desktop import APP_NAME

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
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
    def chats(self) -> Path:
        return self.root / "chats.sqlite3"

    @property
    def chroma(self) -> Path:
        return self.root / "chroma"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def lock(self) -> Path:
        return self.root / "sprig.lock"

    @property
    def crash_marker(self) -> Path:
        return self.root / "model-loading.marker"

    @classmethod
    def default(cls) -> Paths:
        return cls(data_dir())


@dataclass
class Settings:
    """Everything a user can change, with the defaults a laptop CPU wants."""

    # chat model: "bundled-qwen" (default), "bundled-gemma", or a path to a GGUF file
    model: str = "bundled-qwen"
    # an OpenAI-compatible endpoint (llama.cpp's server); empty = run the model in-process
    model_endpoint: str = ""
    temperature: float = 0.2
    context_size: int = 4096
    max_answer_tokens: int = 384
    passages_per_answer: int = 4
    # retrieval
    chunk_tokens: int = 128
    chunk_overlap: int = 24
    # cosine similarity below which Sprig says the documents don't hold the answer
    # (calibrated on SQuAD 2.0 unanswerables; see bench/quality.py)
    abstain_below: float = 0.40
    allow_general_knowledge: bool = False
    # store: empty = embedded Chroma in the data folder; "http://host:port" = a Chroma server
    chroma_url: str = ""
    system_prompts: dict[str, str] = field(default_factory=dict)
    # parser limits
    parse_timeout_s: float = 120.0
    parse_memory_mb: int = 2048
    max_file_mb: int = 200
    # window state
    last_collection: str = "default"
    auto_load_model: bool = True

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or Paths.default().settings
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
        try:
            return cls(**values)
        except TypeError:
            return cls()

    def save(self, path: Path | None = None) -> None:
        path = path or Paths.default().settings
        atomic_write_text(path, json.dumps(asdict(self), indent=2, sort_keys=True))


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
