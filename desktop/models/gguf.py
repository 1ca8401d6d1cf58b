"""Check a GGUF file before llama.cpp sees it: its loader has a history of heap overflows.

We read only the fixed header and refuse anything that is missing, truncated, not GGUF,
of an unknown version, or claims absurd counts (the shape of CVE-2024-21836).
"""

from __future__ import annotations

import struct
from pathlib import Path

from desktop.errors import ModelError

GGUF_MAGIC = b"GGUF"
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MIN_SIZE = 1024 * 1024


def check_gguf(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"Model file not found: {path}. Choose another model in Settings.")
    if not path.is_file():
        raise ModelError(f"Not a model file: {path} is a folder.")
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            header = handle.read(24)
    except OSError as exc:
        raise ModelError(f"Cannot read the model file {path.name}: {exc.strerror}.") from None
    if header[:4] != GGUF_MAGIC:
        raise ModelError(f"{path.name} is not a GGUF model file (llama.cpp models end in .gguf).")
    if len(header) < 24:
        raise ModelError(f"{path.name} is damaged: the file is truncated.")
    version, n_tensors, n_kv = struct.unpack("<IQQ", header[4:24])
    if version not in (2, 3):
        raise ModelError(f"{path.name} uses GGUF version {version}, which Sprig does not support.")
    if n_tensors == 0 or n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelError(
            f"{path.name} is damaged or forged: its header claims {n_tensors:,} tensors and "
            f"{n_kv:,} metadata entries."
        )
    if size < MIN_SIZE:
        raise ModelError(f"{path.name} is damaged: the file is truncated ({size:,} bytes).")
    return path
