"""One Sprig per data folder.

The first launch takes a ``QLockFile`` in the data folder before any store is opened, then
listens on a local socket named after that folder. A second launch on the same folder
fails to take the lock, hands its file arguments to the running one over a
``QLocalSocket`` (or reports that it is running) and exits, without opening anything.

A lock left by a process that died is stale: Qt checks the recorded process id and takes
the lock over, so a crash never locks the user out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from desktop.lock import server_name

HANDOFF_TIMEOUT_S = 1.5  # a second launch gives up after this and says Sprig is running


class SingleInstance(QObject):
    """``acquire()`` first; then ``listen()`` in the running app, or ``hand_off()`` in a second one."""

    # paths (absolute) a second launch asked to open; emitted on the GUI thread
    received = Signal(list)

    def __init__(self, root: Path, lock_path: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = QLockFile(str(lock_path or self.root / "sprig.lock"))
        self.lock.setStaleLockTime(0)  # only a dead owner makes the lock stale, never its age
        self.name = server_name(self.root)
        self._server: QLocalServer | None = None
        self._clients: list[QLocalSocket] = []

    # ------------------------------------------------------------ the first launch
    def acquire(self) -> bool:
        return self.lock.tryLock(0)

    def lock_problem(self) -> str:
        """Why the lock could not be taken, when the reason is not another running Sprig."""
        error = self.lock.error()
        if error == QLockFile.LockError.PermissionError:
            return "no permission to create its lock file"
        if error == QLockFile.LockError.UnknownError:
            return "its lock file cannot be created"
        return ""

    def owner(self) -> str:
        ok, pid, host, app = self.lock.getLockInfo()
        return f"process {pid} on {host}" if ok else "another process"

    def listen(self) -> bool:
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        QLocalServer.removeServer(self.name)  # a socket file left by a crashed run
        if not server.listen(self.name):
            return False
        server.newConnection.connect(self._accept)
        self._server = server
        return True

    def _accept(self) -> None:
        assert self._server is not None
        while (socket := self._server.nextPendingConnection()) is not None:
            self._clients.append(socket)
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._drop(s))

    def _read(self, socket: QLocalSocket) -> None:
        if not socket.canReadLine():
            return
        line = bytes(socket.readLine()).decode("utf-8", "replace")
        try:
            message = json.loads(line)
            paths = [str(p) for p in message.get("paths", []) if isinstance(p, str)]
        except (ValueError, AttributeError):
            paths = []
        socket.write(b"ok\n")
        socket.flush()
        self.received.emit(paths)

    def _drop(self, socket: QLocalSocket) -> None:
        if socket in self._clients:
            self._clients.remove(socket)
        socket.deleteLater()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.lock.isLocked():
            self.lock.unlock()

    # ------------------------------------------------------------ the second launch
    def hand_off(self, paths: list[str], timeout_s: float = HANDOFF_TIMEOUT_S) -> bool:
        """Send ``paths`` to the running instance; True once it acknowledged them."""
        deadline = time.monotonic() + timeout_s
        payload = (json.dumps({"paths": [str(Path(p).absolute()) for p in paths]}) + "\n").encode()
        while time.monotonic() < deadline:
            socket = QLocalSocket()
            socket.connectToServer(self.name)
            if socket.waitForConnected(_ms_left(deadline, 300)):
                socket.write(payload)
                socket.waitForBytesWritten(_ms_left(deadline, 500))
                acknowledged = False
                while time.monotonic() < deadline and socket.waitForReadyRead(_ms_left(deadline, 500)):
                    if socket.canReadLine():
                        acknowledged = bytes(socket.readLine()).strip() == b"ok"
                        break
                socket.disconnectFromServer()
                return acknowledged
            time.sleep(0.05)  # the running one may not be listening yet (still starting)
        return False


def _ms_left(deadline: float, cap_ms: int) -> int:
    return max(1, min(cap_ms, int((deadline - time.monotonic()) * 1000)))
