"""Run a function in a child process with a deadline: the one way Sprig does it for checks
that might crash or hang (a model file's probe, the vector store's check).

``with child_process(target, args, name) as job:`` starts ``target(conn, *args)`` in a fresh
("spawn") process that sends its messages through ``conn``; ``job.receive(timeout)`` returns
the next message, ``TIMEOUT`` when none came in time, or raises ``ChildDied`` with the exit
code when the child ended without sending one. On leaving the block the child is killed if it
still runs, and reaped.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TIMEOUT = object()


class ChildDied(Exception):
    def __init__(self, exitcode: int | None):
        super().__init__(f"the child process ended (exit code {exitcode})")
        self.exitcode = exitcode


class Child:
    def __init__(self, proc, conn):
        self.proc = proc
        self._conn = conn

    def receive(self, timeout: float) -> Any:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            left = deadline - time.monotonic()
            if self._conn.poll(max(0.0, min(left, 0.25))):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    self.proc.join(5)
                    raise ChildDied(self.proc.exitcode) from None
            if not self.proc.is_alive() and not self._conn.poll(0):
                self.proc.join(5)
                raise ChildDied(self.proc.exitcode)
            if left <= 0:
                return TIMEOUT


@contextmanager
def child_process(target: Callable[..., None], args: tuple, name: str) -> Iterator[Child]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args), daemon=True, name=name)
    proc.start()
    child.close()
    try:
        yield Child(proc, parent)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
