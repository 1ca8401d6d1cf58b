"""A child process for the kill -9 tests: it does real work and reports each acknowledged step.

    python -m tests.helpers.kill_driver index HOME FOLDER   # index FOLDER; prints "store"/"embed"/"done"/"fail" lines
    python -m tests.helpers.kill_driver chat HOME           # appends messages; prints each id after commit
    python -m tests.helpers.kill_driver settings HOME       # saves settings over and over; prints each version

Every line is flushed as soon as the step it reports is durable, so the parent knows what was
acknowledged before it sent SIGKILL. An "embed" line carries DONE/CHUNKS (vectors written so
far); KILL_DRIVER_EMBED_DELAY_S makes each batch of passages that many seconds slower, so a
test can kill in the middle of a document's vector phase. Any attempt to open a network connection is refused and
reported on stderr as a line starting with NETWORK.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def _guard_network() -> None:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def remote(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        host = address[0] if isinstance(address, tuple) else str(address)
        return not (host in ("localhost", "::1") or str(host).startswith("127."))

    def connect(self, address):
        if remote(self, address):
            print(f"NETWORK connect {address!r}", file=sys.stderr, flush=True)
            raise OSError("network disabled")
        return real_connect(self, address)

    def connect_ex(self, address):
        if remote(self, address):
            print(f"NETWORK connect_ex {address!r}", file=sys.stderr, flush=True)
            raise OSError("network disabled")
        return real_connect_ex(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex


def run_index(home: Path, folder: Path) -> None:
    import os
    import time

    from desktop.config import Paths, Settings
    from desktop.rag.embeddings import Embedder
    from desktop.rag.library import Library

    embedder = Embedder()
    delay = float(os.environ.get("KILL_DRIVER_EMBED_DELAY_S", "0"))
    if delay:
        real_embed = embedder.embed

        def slow_embed(texts, batched=False):
            time.sleep(delay)
            return real_embed(texts, batched)

        embedder.embed = slow_embed
    library = Library(Paths(home), Settings(), embedder=embedder)
    print("ready", flush=True)

    def progress(p) -> None:
        if p.stage == "embed":
            print(f"embed\t{p.path}\t{p.chunks_done}/{p.chunks}", flush=True)
        elif p.stage != "scan":
            print(f"{p.stage}\t{p.path}", flush=True)

    summary = library.index([folder], progress=progress)
    library.close()
    print(f"finished\t{len(summary.indexed)}\t{len(summary.failed)}", flush=True)


def message_text(n: int) -> str:
    return f"message {n}: " + "lorem ipsum dolor sit amet " * (1 + n % 40)


def run_chat(home: Path) -> None:
    from desktop.chats import ChatStore, Message
    from desktop.config import Paths

    store = ChatStore(Paths(home).chats)
    conversation = store.create("kill test")
    print(f"conversation\t{conversation.id}", flush=True)
    n = 0
    while True:
        n += 1
        role = "user" if n % 2 else "assistant"
        message = store.add_message(conversation.id, Message(role, message_text(n), {"n": n}))
        print(f"acked\t{message.id}\t{n}", flush=True)


def run_settings(home: Path) -> None:
    from desktop.config import Paths, Settings

    path = Paths(home).settings
    n = 0
    while True:
        n += 1
        settings = Settings(temperature=n / 1000, context_size=2048 + n,
                            system_prompts={"default": f"version {n} " + "x" * (n % 5000)})
        settings.save(path)
        print(f"saved\t{n}", flush=True)


if __name__ == "__main__":
    _guard_network()
    mode, home = sys.argv[1], Path(sys.argv[2])
    if mode == "index":
        run_index(home, Path(sys.argv[3]))
    elif mode == "chat":
        run_chat(home)
    elif mode == "settings":
        run_settings(home)
    else:
        raise SystemExit(f"unknown mode {mode}")
