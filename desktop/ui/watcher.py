"""Linked folders are watched: a file added, changed or deleted on disk is indexed again.

A ``QFileSystemWatcher`` watches every folder under a linked folder (creations, deletions,
renames) and the indexed files themselves (edits in place). Bursts of changes are
debounced into one sync of the collection. A slow periodic re-scan catches what the
watcher cannot see (network drives, more files than the OS lets us watch). The folder
walk that builds the watch list runs on a worker, never on the GUI thread.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from desktop.files import is_under
from desktop.ui.workers import Worker

MAX_WATCHED_DIRS = 2000
MAX_WATCHED_FILES = 4000


def watch_list(library) -> tuple[dict[str, str], list[str], list[str]]:
    """(folder -> collection, folders to watch, files to watch); runs on a worker."""
    linked = {folder: coll for coll, folder in library.catalog.folders()}
    dirs: list[str] = []
    for folder in linked:
        for root, subdirs, _files in os.walk(folder):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            dirs.append(root)
            if len(dirs) >= MAX_WATCHED_DIRS:
                break
    files: list[str] = []
    for doc in library.documents():
        if any(is_under(doc.path, folder) for folder in linked):
            if os.path.exists(doc.path):
                files.append(doc.path)
        if len(files) >= MAX_WATCHED_FILES:
            break
    return linked, dirs, files


class FolderWatcher(QObject):
    changed = Signal(str)  # a collection whose linked folders changed on disk

    def __init__(self, library, parent: QObject | None = None, debounce_ms: int = 1200,
                 rescan_ms: int = 5 * 60 * 1000):
        super().__init__(parent)
        self.library = library
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(self._on_change)
        self._watcher.fileChanged.connect(self._on_change)
        self._linked: dict[str, str] = {}
        self._pending: set[str] = set()
        self._debounce = QTimer(self, singleShot=True, interval=debounce_ms)
        self._debounce.timeout.connect(self._flush)
        self._rescan = QTimer(self, interval=rescan_ms)
        self._rescan.timeout.connect(self._rescan_all)
        self._worker: Worker | None = None
        self._again = False
        self._stopped = False

    def start(self) -> None:
        self._rescan.start()
        self.refresh()

    def stop(self) -> None:
        self._stopped = True
        self._debounce.stop()
        self._rescan.stop()
        paths = self._watcher.directories() + self._watcher.files()
        if paths:
            self._watcher.removePaths(paths)

    @property
    def watched(self) -> list[str]:
        return self._watcher.directories() + self._watcher.files()

    def refresh(self) -> None:
        """Rebuild the watch list (after a sync, or when folders were linked or removed)."""
        if self._stopped:
            return
        if self._worker is not None:
            self._again = True
            return
        self._worker = Worker(watch_list, self.library, name="watch-list")
        self._worker.connect(returned=self._apply, finished=self._refreshed)
        self._worker.start()

    def _refreshed(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.refresh()

    def _apply(self, result) -> None:
        if self._stopped:
            return
        linked, dirs, files = result
        self._linked = linked
        wanted = set(dirs) | set(files)
        current = set(self.watched)
        gone = sorted(current - wanted)
        new = sorted(wanted - current)
        if gone:
            self._watcher.removePaths(gone)
        if new:
            self._watcher.addPaths(new)

    def _on_change(self, path: str) -> None:
        for folder, collection in self._linked.items():
            if is_under(path, folder, or_same=True):
                self._pending.add(collection)
        if self._pending:
            self._debounce.start()

    def _flush(self) -> None:
        pending, self._pending = self._pending, set()
        for collection in sorted(pending):
            self.changed.emit(collection)

    def _rescan_all(self) -> None:
        for collection in sorted(set(self._linked.values())):
            self.changed.emit(collection)

