"""Drag and drop at the data boundary: mime data in, local paths out.

Widgets keep their drag handlers to a few lines and call these helpers, so tests can
drive them with a real ``QMimeData`` instead of a simulated mouse gesture.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData


def local_paths(mime: QMimeData | None) -> list[Path]:
    """The local files and folders a drop carries (remote URLs and plain text are ignored)."""
    if mime is None or not mime.hasUrls():
        return []
    paths: list[Path] = []
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path not in paths:
                paths.append(path)
    return paths


def carries_files(mime: QMimeData | None) -> bool:
    return bool(local_paths(mime))
