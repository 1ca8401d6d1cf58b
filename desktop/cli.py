"""The `sprig` command line: index, search, docs, remove, ask, check.

It drives the same core the window does (desktop.rag, desktop.models).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from desktop.display import printable

EXIT_IN_USE = 4  # the data folder is in use by the window or another sprig command


def _library():
    from desktop.rag.library import Library

    lib = Library()
    for problem in lib.settings.problems:
        print(f"warning: settings: {problem}", file=sys.stderr)
    return lib


class _Bar:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, p) -> None:
        if p.stage == "fail":
            self._clear()
            print(f"  failed: {printable(p.path)}: {printable(p.message)}", file=self.stream)
            return
        if not self.tty:
            self._plain(p)
            return
        now = time.monotonic()
        if now - self.last < 0.1 and p.stage != "done":
            return
        self.last = now
        width = 28
        filled = int(width * p.fraction)
        name = printable(Path(p.path).name)[:40]
        extra = f" {p.chunks_done}/{p.chunks} chunks" if p.chunks else ""
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {p.file_index}/{p.file_count} {p.stage:<5} {name}{extra}"
        self.stream.write(line[:120].ljust(120))
        self.stream.flush()

    def _plain(self, p) -> None:
        """Not a terminal (a log, a pipe): a line when a file starts, and every 15 s on a long one."""
        now = time.monotonic()
        name = printable(Path(p.path).name)
        if p.stage == "parse":
            print(f"  [{p.file_index}/{p.file_count}] {name}", file=self.stream, flush=True)
            self.last = now
        elif p.stage == "embed" and p.chunks and now - self.last >= 15:
            print(f"  [{p.file_index}/{p.file_count}] {name}: {p.chunks_done}/{p.chunks} chunks",
                  file=self.stream, flush=True)
            self.last = now

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 120 + "\r")

    def close(self) -> None:
        self._clear()


def cmd_index(args) -> int:
    from desktop.rag.types import CancelToken

    lib = _library()
    bar = _Bar()
    cancel = CancelToken()
    try:
        summary = lib.index(args.paths, args.collection, progress=bar, cancel=cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        bar.close()
        print("cancelled", file=sys.stderr)
        return 130
    finally:
        bar.close()
    rate = summary.pages / summary.seconds if summary.seconds else 0.0
    print(
        f"indexed {len(summary.indexed)} file(s), {summary.pages} page(s), {summary.chunks} chunk(s) "
        f"in {summary.seconds:.1f} s ({rate:.1f} pages/s); unchanged {len(summary.skipped)}; "
        f"removed {len(summary.removed)}; failed {len(summary.failed)}"
    )
    for path, reason in summary.failed.items():
        print(f"  FAILED {printable(path)}: {printable(reason)}")
    if summary.cancelled:
        print("cancelled: documents not finished were left out")
    return 1 if summary.failed or summary.cancelled else 0


def cmd_search(args) -> int:
    lib = _library()
    passages = lib.search(args.query, k=args.k, collection=args.collection, mode=args.mode)
    if args.json:
        print(json.dumps([_passage_json(p) for p in passages], ensure_ascii=False, indent=2))
        return 0
    if not passages:
        print("no passages found")
    for i, p in enumerate(passages, start=1):
        snippet = printable(" ".join(p.text.split())[:200])
        sim = f"{p.similarity:.3f}" if p.similarity is not None else "-"
        print(f"[{i}] {p.location}  (similarity {sim}, fused {p.score:.4f})\n    {snippet}")
    return 0


def _passage_json(p) -> dict:
    return {
        "path": p.path,
        "page": p.page,
        "text": p.text,
        "score": p.score,
        "similarity": p.similarity,
        "bm25": p.bm25,
        "char_start": p.char_start,
        "char_end": p.char_end,
        "chunk_id": p.chunk_id,
    }


def cmd_docs(args) -> int:
    lib = _library()
    docs = lib.documents(args.collection)
    if args.json:
        print(json.dumps([d.as_json() for d in docs], ensure_ascii=False, indent=2))
        return 0
    if not docs:
        print("no documents indexed yet: sprig index PATH")
    for d in docs:
        detail = f"{d.pages} pages, {d.chunks} chunks" if d.status == "indexed" else (d.reason or "")
        print(f"{d.status:<8} [{printable(d.collection)}] {printable(d.path)}  {printable(detail)}")
    return 0


def cmd_remove(args) -> int:
    lib = _library()
    removed = []
    for path in args.paths:
        removed += lib.remove(path, args.collection)
    for path in removed:
        print(f"removed {printable(path)}")
    if not removed:
        print("nothing to remove: no indexed document matches", file=sys.stderr)
        return 1
    return 0


def cmd_ask(args) -> int:
    from desktop.errors import SprigError
    from desktop.rag.answer import AnswerEngine

    lib = _library()
    settings = lib.settings
    if args.model:
        settings.model = args.model
    try:
        engine = AnswerEngine.from_settings(lib, settings, paths=lib.paths)
        stream = engine.ask(args.question, collection=args.collection,
                            general_knowledge=args.general_knowledge)
        pieces = []
        for piece in stream:
            pieces.append(piece)
            if not args.json:
                sys.stdout.write(printable_answer(piece))
                sys.stdout.flush()
        answer = stream.result
    except SprigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer.as_json(), ensure_ascii=False, indent=2))
        return 0
    if answer.text.strip() != "".join(pieces).strip():
        # the pipeline replaced the model's draft (a quote of the evidence, or an abstention)
        print(f"\n\n{printable_answer(answer.text)}", end="")
    print()
    unsupported = [c.text for c in answer.claims if not c.supported]
    if unsupported:
        print("\nNot supported by the evidence (check before relying on it):")
        for text in unsupported:
            print(f"  - {printable(text)}")
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            print(f'[{c.n}] {c.location}: "{printable(c.snippet)}"')
    elif answer.abstained and answer.nearest:
        print("\nNearest passages (not enough to answer):")
        for p in answer.nearest:
            print(f'  {p.location}: "{printable(" ".join(p.text.split())[:160])}"')
    return 0


def printable_answer(text: str) -> str:
    """Model output may echo a document's escape sequences: keep line breaks, escape the rest."""
    return "\n".join(printable(line) for line in text.split("\n"))


def cmd_check(args) -> int:
    from desktop.config import Paths
    from desktop.rag.health import check_store, ensure_store

    paths = Paths.default()
    if args.repair:
        from desktop.rag.health import repair_catalog

        fixed = repair_catalog(paths)
        if fixed.status != "ok":
            source = ("restored from the last good copy" if fixed.status == "restored"
                      else "started empty (no usable copy was found)")
            print(f"the catalog was damaged: {source}, {fixed.documents} document(s); the damaged "
                  f"file was kept as {printable(str(fixed.moved_to))}. Run `sprig index` on your folders "
                  "to bring back documents added since.")
        bar = _Bar()
        try:
            repaired = ensure_store(paths, progress=bar)
        finally:
            bar.close()
        if repaired.status == "rebuilt":
            moved = f"; the damaged folder was kept as {repaired.moved_to}" if repaired.moved_to else ""
            print(f"rebuilt {repaired.rebuilt_chunks} vectors from the catalog ({repaired.reason}){moved}")
    else:
        # a damaged Chroma folder can crash the process that opens it: look in a child first
        store = check_store(paths)
        if not store.ok:
            print(f"the vector store is damaged: {store.reason}\nrun `sprig check --repair` to rebuild it "
                  "from the catalog", file=sys.stderr)
            return 1
    lib = _library()
    report = lib.consistency_report()
    print(json.dumps(report, indent=2))
    return 0 if report["missing_vectors"] == report["orphan_vectors"] == report["in_flight"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprig", description="Chat with your own documents, offline.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index files and folders (recursively)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--collection", default="default")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="show the passages that best match a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--collection", default="default")
    p.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("docs", help="list indexed documents")
    p.add_argument("--collection", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("remove", help="remove a file or folder from the index")
    p.add_argument("paths", nargs="+")
    p.add_argument("--collection", default=None)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("ask", help="answer a question from the indexed documents")
    p.add_argument("question")
    p.add_argument("--collection", default="default")
    p.add_argument("--model", default=None, help="a GGUF file, or bundled-qwen / bundled-gemma")
    p.add_argument("--general-knowledge", action="store_true",
                   help="let the model answer from its own knowledge when the documents don't")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("check", help="check that the catalog and the vector store agree")
    p.add_argument("--repair", action="store_true",
                   help="rebuild a damaged vector store from the catalog and re-queue interrupted files")
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    from desktop.config import enforce_offline

    enforce_offline()
    args = build_parser().parse_args(argv)
    import sqlite3

    from desktop.config import Paths, record_native_crashes
    from desktop.errors import (
        CatalogDamaged,
        DataFolderUnwritable,
        DiskFull,
        SprigError,
        StoreError,
    )
    from desktop.lock import DataFolderLock, hand_off

    paths = Paths.default()
    record_native_crashes(paths)
    lock = DataFolderLock(paths.lock)
    if not lock.acquire():
        # the window (or another sprig command) owns this data folder: one writer at a time
        if args.command == "index" and hand_off(paths.root, args.paths):
            print(f"Sprig's window is open on {printable(str(paths.root))}: it is indexing the "
                  f"{len(args.paths)} item(s) there (see its Documents panel).")
            return 0
        print(f"error: Sprig is already using the data folder {printable(str(paths.root))} "
              f"({lock.owner()}). Close the window (or wait for the other sprig command) and try "
              "again, or use the window.", file=sys.stderr)
        return EXIT_IN_USE
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except (CatalogDamaged, DataFolderUnwritable, DiskFull) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}\nrun `sprig check --repair` to rebuild the vector store", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:  # damage found while reading
        from desktop.rag.catalog import classify_error

        print(f"error: {classify_error(paths.catalog, exc)}", file=sys.stderr)
        return 2
    except SprigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        lock.release()
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
