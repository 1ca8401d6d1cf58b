"""Embedder stand-ins that wrap the real one."""

from __future__ import annotations


class Unbuilt:
    """The real embedder, as it is in a fresh data folder: ``needs_build`` until loaded."""

    def __init__(self, real):
        self.real = real
        self.loads = 0

    @property
    def needs_build(self) -> bool:
        return self.loads == 0

    def load(self):
        self.loads += 1
        return self.real.load()

    def __getattr__(self, name):
        return getattr(self.real, name)


class CountingEmbedder:
    """The real embedder, counting the passages it embeds (queries are not counted)."""

    def __init__(self, real):
        self.real = real
        self.passages = 0

    def embed(self, texts):
        self.passages += len(texts)
        return self.real.embed(texts)

    def __getattr__(self, name):
        return getattr(self.real, name)
