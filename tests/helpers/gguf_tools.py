"""Just enough GGUF to build hostile model files in tests (the `gguf` package is not installed).

``with_metadata(src, dst, {"tokenizer.chat_template": "..."})`` copies a real model with
metadata strings replaced or added: the header and tensor infos are rewritten, the tensor
data (offsets relative to the aligned data section) is copied unchanged.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

# value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_FIXED = {UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, UINT32: 4, INT32: 4, FLOAT32: 4, BOOL: 1,
          UINT64: 8, INT64: 8, FLOAT64: 8}


class _Reader:
    def __init__(self, handle):
        self.f = handle

    def u32(self) -> int:
        return struct.unpack("<I", self.f.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.f.read(8))[0]

    def string(self) -> bytes:
        n = self.u64()
        return self.f.read(n)

    def value_bytes(self, vtype: int) -> bytes:
        """The raw encoding of one value of ``vtype`` (without the type tag)."""
        if vtype in _FIXED:
            return self.f.read(_FIXED[vtype])
        if vtype == STRING:
            raw = self.string()
            return struct.pack("<Q", len(raw)) + raw
        if vtype == ARRAY:
            item = self.u32()
            count = self.u64()
            body = b"".join(self.value_bytes(item) for _ in range(count))
            return struct.pack("<IQ", item, count) + body
        raise ValueError(f"unknown GGUF value type {vtype}")


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def read_layout(path: Path):
    """(version, [(key, type, raw value)], tensor-info bytes, n_tensors, data offset, alignment)."""
    with open(path, "rb") as handle:
        r = _Reader(handle)
        assert handle.read(4) == b"GGUF"
        version = r.u32()
        n_tensors = r.u64()
        n_kv = r.u64()
        kvs = []
        alignment = 32
        for _ in range(n_kv):
            key = r.string().decode()
            vtype = r.u32()
            raw = r.value_bytes(vtype)
            if key == "general.alignment":
                alignment = struct.unpack("<I", raw)[0]
            kvs.append((key, vtype, raw))
        start = handle.tell()
        for _ in range(n_tensors):  # name, n_dims, dims, type, offset
            r.string()
            dims = r.u32()
            handle.read(8 * dims + 4 + 8)
        end = handle.tell()
        handle.seek(start)
        infos = handle.read(end - start)
        data = end + (-end % alignment)
    return version, kvs, infos, n_tensors, data, alignment


def with_metadata(src: Path, dst: Path, strings: dict[str, str]) -> Path:
    """Copy ``src`` to ``dst`` with the given string metadata replaced or added."""
    version, kvs, infos, n_tensors, data_offset, alignment = read_layout(src)
    replaced = {k for k, _, _ in kvs}
    out_kvs = [(k, t, _string(strings[k]) if k in strings else raw) for k, t, raw in kvs]
    out_kvs += [(k, STRING, _string(v)) for k, v in strings.items() if k not in replaced]
    header = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(out_kvs))
    for key, vtype, raw in out_kvs:
        header += _string(key) + struct.pack("<I", vtype) + raw
    header += infos
    header += b"\0" * (-len(header) % alignment)
    size = src.stat().st_size
    with open(src, "rb") as source, open(dst, "wb") as target:
        target.write(header)
        source.seek(data_offset)
        _copy_bytes(source, target, size - data_offset)
    return dst


def _copy_bytes(source, target, count: int) -> None:
    """Copy ``count`` bytes from the source file's position to the target's, in the kernel."""
    while count > 0:
        sent = os.sendfile(target.fileno(), source.fileno(), None, count)
        if sent == 0:
            break
        count -= sent


def truncated_copy(src: Path, dst: Path, fraction: float) -> Path:
    with open(src, "rb") as source, open(dst, "wb") as target:
        _copy_bytes(source, target, int(src.stat().st_size * fraction))
    return dst


def forged_header(dst: Path, n_tensors: int, n_kv: int, body: bytes = b"", size: int = 2 << 20) -> Path:
    """A file with a valid magic and version whose counts (and first key) are whatever we say."""
    data = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body
    dst.write_bytes(data + b"\0" * max(0, size - len(data)))
    return dst
