"""The small error hierarchy of the core. Every message is meant for the user."""

from __future__ import annotations


class SprigError(Exception):
    """Base class: the message is plain language a user can act on."""


class DocumentError(SprigError):
    """A file could not be indexed. ``code`` is a stable machine word, the message is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = message


class Cancelled(SprigError):
    """The user cancelled; not an error to show."""


class ModelError(SprigError):
    """A model file is missing, damaged or cannot be run."""


class StoreError(SprigError):
    """The vector store or catalog cannot be used."""


class CatalogDamaged(StoreError):
    """The catalog file is not a readable SQLite database (``sprig check --repair`` restores it)."""


class DataFolderUnwritable(StoreError):
    """The data folder (or a file in it) cannot be written: a permission problem, never damage."""


class DiskFull(StoreError):
    """Writing failed because the disk (or a size limit) is full."""


class StoreUnavailable(StoreError):
    """A Chroma server cannot be reached, answers too slowly or returns errors: nothing local
    is lost, and what was being indexed waits in the queue until it is back."""
