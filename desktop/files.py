"""Small facts about paths that several layers need."""

from __future__ import annotations

import os


def is_under(path: str | os.PathLike, folder: str | os.PathLike, *, or_same: bool = False) -> bool:
    """Is ``path`` inside ``folder`` (at any depth)? With ``or_same``, the folder itself counts.
    Plain string work on absolute paths, as the catalog stores them: "/a/bc" is not under "/a/b"."""
    path, folder = os.fspath(path), os.fspath(folder)
    if or_same and path == folder:
        return True
    return path.startswith(folder.rstrip(os.sep) + os.sep)
