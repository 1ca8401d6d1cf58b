"""One writer per data folder, shared by the window and the command line.

The window takes a ``QLockFile`` on ``sprig.lock``; Qt holds an ``flock`` on that file while
it owns it. The command line (which never loads Qt) takes the same file the same way:
an ``flock`` that only a live owner can hold, with the owner's details written in Qt's
format, so each side sees the other and a lock left by a dead process is taken over.
A command that finds the window running can hand files to it over the window's local
socket (the same one a second launch of the window uses).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sys
from pathlib import Path


def server_name(root: Path) -> str:
    """The window's local socket name: unique to the data folder and the user (short)."""
    key = f"{getpass.getuser()}\0{os.path.realpath(root)}".encode()
    return "sprig-" + hashlib.sha256(key).hexdigest()[:20]


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class DataFolderLock:
    """``acquire()`` -> True when this process now owns the data folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        exe = os.path.basename(os.path.realpath(sys.executable))
        info = (f"{os.getpid()}\n{exe}\n{socket.gethostname()}\n{_read('/etc/machine-id')}\n"
                f"{_read('/proc/sys/kernel/random/boot_id')}\n")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return True

    def owner(self) -> str:
        lines = _read(str(self.path)).splitlines()
        return f"process {lines[0]}" if lines and lines[0].isdigit() else "another process"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # as QLockFile does: the file exists only while someone owns it
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> DataFolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hand_off(root: Path, paths: list[str], timeout_s: float = 2.0) -> bool:
    """Send ``paths`` to the window running on ``root``; True once it acknowledged them."""
    if not hasattr(socket, "AF_UNIX"):
        return False
    temp = (os.environ.get("TMPDIR") or "/tmp").rstrip("/") or "/"
    address = os.path.join(temp, server_name(root))
    payload = (json.dumps({"paths": [str(Path(p).absolute()) for p in paths]}) + "\n").encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
            sock.sendall(payload)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
            return reply.strip() == b"ok"
    except OSError:
        return False
