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


class Gated:
    """The real embedder, whose passage embedding waits at a gate once ``passes`` calls went
    through: indexing halts in its vector phase until ``release()``. Queries are not held
    (``embed_query`` is the real one's)."""

    def __init__(self, real, passes: int = 0):
        import threading

        self.real = real
        self.passes = passes
        self.calls = 0
        self.gate = threading.Event()
        self.waiting = threading.Event()  # a call is held at the gate

    def embed(self, texts, batched: bool = False):
        self.calls += 1
        if self.calls > self.passes and not self.gate.is_set():
            self.waiting.set()
            if not self.gate.wait(300):
                raise TimeoutError("the test never released the embedder")
        return self.real.embed(texts, batched)

    def release(self) -> None:
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self.real, name)
