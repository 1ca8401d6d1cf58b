"""The `sprig` command line: index, search, docs, remove, ask, summarize, chats, check, health.

It drives the same core the window does (desktop.rag, desktop.models) and never loads Qt.
Results go to stdout; progress, warnings and errors go to stderr, each failure as one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from desktop import __version__
from desktop.display import printable

if TYPE_CHECKING:
    from desktop.chats import AnswerRecord

EXIT_OK = 0
EXIT_FAILED = 1  # some files failed (index), nothing matched (remove), the check found problems,
# no point survived the checks (summarize)
EXIT_USAGE = 2  # the command line itself is wrong (argparse's code)
EXIT_ERROR = 3  # Sprig could not do the job: damaged catalog or store, unusable model, full disk...
EXIT_IN_USE = 4  # the data folder is in use by the window or another sprig command
EXIT_INTERRUPTED = 130  # Ctrl+C (128 + SIGINT)

EXIT_CODES = f"""exit codes:
  {EXIT_OK}    done
  {EXIT_FAILED}    done, but some files failed (index), nothing matched (remove),
       the check found problems (check), no point was made (summarize), or the
       collection has no indexed text to ask about (health)
  {EXIT_USAGE}    usage error (unknown command or option, bad value)
  {EXIT_ERROR}    Sprig error: the catalog or vector store is damaged, the model or data
       folder cannot be used, the disk is full, no such chat, the file is not
       indexed (summarize), no such collection (health)...
  {EXIT_IN_USE}    the data folder is in use by Sprig's window or another sprig command
  {EXIT_INTERRUPTED}  interrupted (Ctrl+C)"""


def error(message: str) -> None:
    """One failure, one line on stderr (a multi-line message is joined, escapes shown)."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"error: {printable(line)}", file=sys.stderr, flush=True)


def note(args, message: str) -> None:
    """Something worth knowing that is not the result (hidden by -q)."""
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def _library(args):
    from desktop.rag.library import Library

    lib = Library()
    for problem in lib.settings.problems:
        note(args, f"warning: settings: {printable(problem)}")
    return lib


# ------------------------------------------------------------------ progress
def _tqdm_class():
    from tqdm import tqdm

    class LabelledBar(tqdm):
        """A tqdm bar with the current file's name after the times (cut to fit the terminal)."""

        label = ""

        @property
        def format_dict(self):
            d = super().format_dict
            d["label"] = self.label
            return d

        def display(self, msg=None, pos=None):
            if self.nrows is not None and self.nrows < 2:  # a terminal that reports no height:
                self.nrows = None  # tqdm would hide the bar
            return super().display(msg, pos)

    return LabelledBar


class _Bar:
    """Indexing progress on stderr.

    On a terminal: a tqdm bar as wide as the terminal (it follows resizes). Not on a
    terminal (a log, a pipe): no bar, a plain line when a file starts and every 15 s on a
    long one. ``quiet``: nothing. Failures are printed as they happen, once each, one line.
    """

    FORMAT = "{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {label}"

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.bar = None
        self.last = 0.0
        self.reported: set[str] = set()  # failures already printed

    def __call__(self, p) -> None:
        if p.stage == "fail":
            self.fail(p.path, p.message)
            return
        if self.quiet:
            return
        if not self.tty:
            self._plain(p)
            return
        total = max(p.file_count, 1)
        if self.bar is None:
            self.bar = _tqdm_class()(total=total, file=self.stream, dynamic_ncols=True, leave=False,
                                     bar_format=self.FORMAT, mininterval=0.1)
        elif self.bar.total != total:
            self.bar.reset(total=total)
        width = _columns(self.stream)
        name = printable(Path(p.path).name)
        limit = max(10, min(width // 3, width - 52))  # the rest of the line takes about 50
        if len(name) > limit:
            name = name[: limit - 1] + "…"
        if p.message:  # e.g. "OCR: page 3 of 12" while a scanned PDF is read
            extra = f" {printable(p.message)}"
        else:
            extra = f" {p.chunks_done}/{p.chunks} chunks" if p.chunks else ""
        self.bar.set_description_str(f"{p.file_index}/{p.file_count} {p.stage:<5}", refresh=False)
        self.bar.label = name + extra
        self.bar.update(p.fraction * total - self.bar.n)

    def _plain(self, p) -> None:
        now = time.monotonic()
        name = printable(Path(p.path).name)
        if p.stage == "parse" and p.message:  # a page of OCR: a line every 15 s at most
            if now - self.last >= 15:
                print(f"  [{p.file_index}/{p.file_count}] {name}: {printable(p.message)}", file=self.stream,
                      flush=True)
                self.last = now
        elif p.stage == "parse":
            print(f"  [{p.file_index}/{p.file_count}] {name}", file=self.stream, flush=True)
            self.last = now
        elif p.stage == "prepare":
            print(f"  {printable(p.message)}", file=self.stream, flush=True)
        elif p.stage == "embed" and p.chunks and now - self.last >= 15:
            print(f"  [{p.file_index}/{p.file_count}] {name}: {p.chunks_done}/{p.chunks} chunks",
                  file=self.stream, flush=True)
            self.last = now

    def fail(self, path: str, reason: str) -> None:
        if path in self.reported:
            return
        self.reported.add(path)
        line = f"FAILED {printable(path)}: {printable(reason)}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _columns(stream) -> int:
    """The width of the terminal ``stream`` is on (80 when it can't be told)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((80, 24)).columns


class _BytesBar:
    """Progress of assembling a bundled model (bytes), on a terminal only."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True, leave=False, unit="B",
                            unit_scale=True, unit_divisor=1024, desc="preparing the model")
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ------------------------------------------------------------------ index
def summary_json(summary) -> dict:
    return {
        "indexed": summary.indexed,
        "unchanged": summary.skipped,
        "removed": summary.removed,
        "failed": [{"path": path, "reason": reason} for path, reason in summary.failed.items()],
        "pages": summary.pages,
        "chunks": summary.chunks,
        "seconds": round(summary.seconds, 3),
        "cancelled": summary.cancelled,
    }


def cmd_index(args) -> int:
    from desktop.rag.types import CancelToken

    lib = _library(args)
    bar = _Bar(quiet=args.quiet)
    cancel = CancelToken()
    try:
        summary = lib.index(args.paths, args.collection, progress=bar, cancel=cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        bar.close()
        print("interrupted: documents not finished were left out", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    for path, reason in summary.failed.items():  # those that failed before any progress
        bar.fail(path, reason)
    if args.json:
        print(json.dumps(summary_json(summary), ensure_ascii=False, indent=2))
    elif not args.quiet:
        rate = summary.pages / summary.seconds if summary.seconds else 0.0
        print(
            f"indexed {len(summary.indexed)} file(s), {summary.pages} page(s), {summary.chunks} chunk(s) "
            f"in {summary.seconds:.1f} s ({rate:.1f} pages/s); unchanged {len(summary.skipped)}; "
            f"removed {len(summary.removed)}; failed {len(summary.failed)}"
        )
        if args.verbose:
            for label, paths in (("indexed", summary.indexed), ("unchanged", summary.skipped),
                                 ("removed", summary.removed)):
                for path in paths:
                    print(f"  {label} {printable(path)}")
    if summary.cancelled:
        print("interrupted: documents not finished were left out", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


# ------------------------------------------------------------------ search, docs, remove
def cmd_search(args) -> int:
    lib = _library(args)
    passages = lib.search(args.query, k=args.k, collection=args.collection, mode=args.mode)
    if lib.search_note:
        note(args, f"warning: {printable(lib.search_note)}")
    if args.json:
        print(json.dumps([p.as_json() for p in passages], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not passages:
        print("no passages found")
    for i, p in enumerate(passages, start=1):
        text = " ".join(p.text.split())
        snippet = printable(text if args.verbose else text[:200])
        sim = f"{p.similarity:.3f}" if p.similarity is not None else "-"
        print(f"[{i}] {p.location}  (similarity {sim}, fused {p.score:.4f})\n    {snippet}")
    return EXIT_OK


def cmd_docs(args) -> int:
    lib = _library(args)
    docs = lib.documents(args.collection)
    if args.json:
        print(json.dumps([d.as_json() for d in docs], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not docs:
        print("no documents indexed yet: sprig index PATH")
    for d in docs:
        detail = f"{d.pages} pages, {d.chunks} chunks" if d.status == "indexed" else (d.reason or "")
        if d.status == "embedding":  # its chunks are searchable by keyword; vectors still to come
            detail = f"keyword search only, embedding {int(d.embedded * 100)}% ({d.pages} pages, {d.chunks} chunks)"
        if d.added_by:
            detail += f", added by {d.added_by}"
        print(f"{d.status:<8} [{printable(d.collection)}] {printable(d.path)}  {printable(detail)}")
    return EXIT_OK


def cmd_remove(args) -> int:
    lib = _library(args)
    removed = []
    for path in args.paths:
        removed += lib.remove(path, args.collection)
    if not args.quiet:
        for path in removed:
            print(f"removed {printable(path)}")
    if not removed:
        error("nothing to remove: no indexed document matches")
        return EXIT_FAILED
    return EXIT_OK


def cmd_library(args) -> int:
    """Where the library lives; move it to a Chroma server and back without re-embedding."""
    from desktop.rag.shared import copy_to_local, copy_to_server, who_am_i

    lib = _library(args)
    settings = lib.settings

    def progress(done: int, total: int, path: str) -> None:
        if not args.quiet:
            print(f"  [{done}/{total}] {printable(path)}", file=sys.stderr, flush=True)

    if args.to_server:
        from desktop.rag.servers import check_chroma_server

        found = check_chroma_server(args.to_server, args.token or "")
        if not found.ok:
            error(f"cannot move the library to {printable(args.to_server)}: {found.summary}")
            return EXIT_ERROR
        moved = copy_to_server(lib, args.to_server, args.token or "", progress)
        lib.close()
        settings.chroma_url, settings.chroma_token = args.to_server, args.token or ""
        settings.save(lib.paths.settings)
        print(f"moved {moved['documents']} document(s) to {printable(args.to_server)} without re-embedding"
              + (f"; {moved['duplicates_dropped']} duplicate(s) dropped" if moved["duplicates_dropped"] else "")
              + f". This PC signs what it adds as {printable(who_am_i(settings.library_name))}.")
        return EXIT_OK
    if args.to_local:
        moved = copy_to_local(lib, progress)
        lib.close()
        old = settings.chroma_url
        settings.chroma_url = settings.chroma_token = ""
        settings.save(lib.paths.settings)
        print(f"copied {moved['documents']} document(s) from {printable(old)} into this PC's data folder "
              "without re-embedding; the server keeps its copy")
        return EXIT_OK
    docs = lib.documents()
    info = {"where": settings.chroma_url or str(lib.paths.chroma), "shared": bool(settings.chroma_url),
            "documents": sum(1 for d in docs if d.status == "indexed"),
            "from_other_pcs": sum(1 for d in docs if d.remote),
            "signed_as": who_am_i(settings.library_name) if settings.chroma_url else None}
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
    elif info["shared"]:
        print(f"shared library on {printable(info['where'])}: {info['documents']} document(s), "
              f"{info['from_other_pcs']} added from other PCs; this PC signs as {printable(info['signed_as'])}")
    else:
        print(f"library on this PC, in {printable(info['where'])}: {info['documents']} document(s)")
    return EXIT_OK


# ------------------------------------------------------------------ ask
def _open_chat(store, title: str, collection: str | None):
    """The saved chat with this title, or a new one; its collection follows this question."""
    conv = store.find(title)
    if conv is None:
        conv = store.create(title.strip(), collection or "default")
    else:
        conv = store.load(conv.id)
        if collection and conv.collection != collection:
            store.set_collection(conv.id, collection)
            conv.collection = collection
    return conv


def cmd_ask(args) -> int:
    from desktop.chats import AnswerRecord
    from desktop.rag.answer import AnswerEngine

    if args.chat is not None and not args.chat.strip():
        raise _UsageError("--chat needs a title")
    lib = _library(args)
    settings = lib.settings
    if args.model:
        settings.model = args.model
    assembling = _BytesBar(args.quiet)
    try:
        engine = AnswerEngine.from_settings(lib, settings, paths=lib.paths, progress=assembling)
    finally:
        assembling.close()
    chat = None
    collection = args.collection or "default"
    if args.chat is not None:
        from desktop.chats import ChatStore, Message

        store = ChatStore(lib.paths.chats)
        conv = _open_chat(store, args.chat, args.collection)
        collection = conv.collection
        history = conv.history()
        store.add_message(conv.id, Message("user", args.question))  # saved as asked, as the window does
        chat = (store, conv)
    else:
        history = []
    stream = engine.ask(args.question, history=history, collection=collection,
                        general_knowledge=args.general_knowledge)
    pieces: list[str] = []
    try:
        for piece in stream:
            pieces.append(piece)
            if not args.json:
                sys.stdout.write(printable_answer(piece))
                sys.stdout.flush()
    except KeyboardInterrupt:
        stream.stop()
        if chat:
            _save_answer(chat, "".join(pieces), AnswerRecord(stopped=True, collection=collection))
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if chat:
            from desktop.errors import SprigError

            reason = str(exc) if isinstance(exc, SprigError) else "the answer failed"
            _save_answer(chat, "".join(pieces), AnswerRecord(error=reason, collection=collection))
        raise
    answer = stream.result
    if lib.search_note:
        note(args, f"warning: {printable(lib.search_note)}")
    if chat:
        record = AnswerRecord.from_answer(answer, collection, getattr(engine.model, "name", ""))
        _save_answer(chat, answer.text, record)
    if args.json:
        data = answer.as_json()
        if chat:
            data["chat"] = {"id": chat[1].id, "title": chat[1].title}
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_OK
    _print_answer(answer, "".join(pieces))
    if args.verbose:
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in answer.timings.items())
        confidence = "-" if answer.confidence is None else f"{answer.confidence:.2f}"
        print(f"mode {answer.mode}, confidence {confidence}; {timings}", file=sys.stderr)
    if chat:
        note(args, f'saved in chat {chat[1].id} "{printable(chat[1].title)}" '
                   f"(sprig chats export {chat[1].id})")
    return EXIT_OK


def _save_answer(chat, text: str, record: AnswerRecord) -> None:
    from desktop.chats import Message

    store, conv = chat
    store.add_message(conv.id, Message.answer(text, record))


def _print_answer(answer, streamed: str) -> None:
    if answer.text.strip() != streamed.strip():
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


def printable_answer(text: str) -> str:
    """Model output may echo a document's escape sequences: keep line breaks, escape the rest."""
    return "\n".join(printable(line) for line in text.split("\n"))


# ------------------------------------------------------------------ summarize
class _SummaryBar:
    """Summary progress on stderr: a tqdm bar of sections on a terminal; off a terminal (a log,
    a pipe) a plain line per section. ``quiet``: nothing."""

    FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} sections {elapsed}<{remaining}"

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.bar = None

    def __call__(self, p) -> None:
        if self.quiet:
            return
        if not self.tty:
            if p.stage == "map":
                print(f"  section {p.done + 1}/{p.total}: {p.points} point(s) so far", file=self.stream, flush=True)
            elif p.stage == "reduce" and p.done == 0:
                print(f"  summing up {p.points} point(s)", file=self.stream, flush=True)
            return
        if p.stage == "map":
            if self.bar is None:
                self.bar = _tqdm_class()(total=p.total, file=self.stream, dynamic_ncols=True, leave=False,
                                         bar_format=self.FORMAT, mininterval=0.1)
            self.bar.set_description_str("reading", refresh=False)
            self.bar.update(p.done - self.bar.n)
        elif p.stage == "reduce" and self.bar is not None:
            self.bar.set_description_str("summing up", refresh=False)
            self.bar.update(self.bar.total - self.bar.n)

    def write(self, line: str) -> None:
        """A line on stdout that does not break the bar."""
        if self.bar is not None:
            self.bar.clear()
        print(line, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _point_line(point, one_file: bool) -> str:
    """"- text (page 3, 5)"; across several files "- text (a.pdf, page 3; b.pdf, page 2)"."""
    pages = [str(c.page) for c in point.citations if c.page is not None]
    if not one_file or not pages:
        where = "; ".join(c.location for c in point.citations)
    else:
        where = ("page " if len(pages) == 1 else "pages ") + ", ".join(pages)
    return f"- {printable(point.text)} ({printable(where)})"


def cmd_summarize(args) -> int:
    from desktop.config import Paths, Settings
    from desktop.rag.answer import load_model
    from desktop.rag.catalog import Catalog
    from desktop.rag.summarize import find_documents, summarize

    if args.file is None and args.collection is None:
        raise _UsageError("name a FILE to summarize, or a --collection to summarize whole")
    if args.task is not None and not args.task.strip():
        raise _UsageError("--task needs words, e.g. --task 'list every deadline'")
    paths = Paths.default()
    settings = Settings.load(paths.settings)
    for problem in settings.problems:
        note(args, f"warning: settings: {printable(problem)}")
    if args.model:
        settings.model = args.model
    catalog = Catalog(paths.catalog)
    model = None
    bar = _SummaryBar(quiet=args.quiet)
    try:
        find_documents(catalog, args.file, args.collection)  # nothing to read: say so before loading the model
        assembling = _BytesBar(args.quiet)
        try:
            model = load_model(settings, paths, assembling)
        finally:
            assembling.close()
        job = summarize(catalog, model, args.file, args.collection, task=args.task or "", progress=bar)
        one_file = args.file is not None
        try:
            for point in job:
                if not args.json:
                    if len(job.result.points) == 1:
                        bar.write("Points:" if not args.task else f"{printable(args.task.strip())}:")
                    bar.write(_point_line(point, one_file))
        except KeyboardInterrupt:
            job.stop()
            job.result.stopped = True
        finally:
            bar.close()
        result = job.result
        if args.json:
            print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        else:
            if result.summary:
                print(f"\nSummary:\n{printable_answer(result.summary)}")
            if args.verbose:
                timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
                dropped = ", ".join(f"{n} {why}" for why, n in result.dropped.items()) or "none"
                print(f"{result.sections_done}/{result.sections} sections, {result.pages} pages; "
                      f"points left out: {dropped}; {timings}", file=sys.stderr)
        if result.stopped:
            print(f"interrupted: {result.sections_done} of {result.sections} sections read", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not result.points:
            error("no point could be made: every point the model wrote failed the checks "
                  "(see -v for why)")
            return EXIT_FAILED
        return EXIT_OK
    finally:
        bar.close()
        if model is not None:
            model.close()
        catalog.close()


# ------------------------------------------------------------------ chats
def _iso(t: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _chat_store(paths):
    """The window's chat store, or None when no chat was ever saved (nothing is created)."""
    from desktop.chats import ChatStore

    return ChatStore(paths.chats) if paths.chats.exists() else None


def cmd_chats(args) -> int:
    from desktop.config import Paths

    store = _chat_store(Paths.default())
    if args.action == "export":
        return _export_chat(args, store, args.id)
    chats = store.list() if store else []
    counts = store.message_counts() if store else {}
    if args.json:
        print(json.dumps([{"id": c.id, "title": c.title, "collection": c.collection,
                           "messages": counts.get(c.id, 0), "created": _iso(c.created),
                           "updated": _iso(c.updated)} for c in chats], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not chats:
        print('no saved chats yet: sprig ask --chat "TITLE" "QUESTION", or ask in the window')
    for c in chats:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated))
        print(f"{c.id:>5}  {when}  {counts.get(c.id, 0):>3} messages  [{printable(c.collection)}]  "
              f"{printable(c.title)}")
    return EXIT_OK


def _export_chat(args, store, chat_id: int) -> int:
    from desktop.errors import SprigError
    from desktop.export import chat_markdown

    conv = store.load(chat_id) if store else None
    if conv is None:
        raise SprigError(f"there is no saved chat with id {chat_id} (`sprig chats` lists them)")
    sys.stdout.write(chat_markdown(conv))
    if store.unreadable:
        note(args, f"warning: {store.unreadable} message(s) could not be read in full")
    return EXIT_OK


# ------------------------------------------------------------------ check
def cmd_check(args) -> int:
    from desktop.config import Paths, Settings
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
        bar = _Bar(quiet=args.quiet)
        try:
            repaired = ensure_store(paths, progress=bar)
        finally:
            bar.close()
        if repaired.status == "rebuilt":
            moved = f"; the damaged folder was kept as {repaired.moved_to}" if repaired.moved_to else ""
            print(f"rebuilt {repaired.rebuilt_chunks} vectors from the catalog ({repaired.reason}){moved}")
    elif not Settings.load(paths.settings).chroma_url:  # a shared library has no Chroma folder here
        # a damaged Chroma folder can crash the process that opens it: look in a child first
        store = check_store(paths)
        if not store.ok:
            error(f"the vector store is damaged: {store.reason}; run `sprig check --repair` to rebuild it "
                  "from the catalog")
            return EXIT_FAILED
    lib = _library(args)
    report = lib.consistency_report()
    print(json.dumps(report, indent=2))
    clean = report["missing_vectors"] == report["orphan_vectors"] == report["in_flight"] == 0
    return EXIT_OK if clean else EXIT_FAILED


# ------------------------------------------------------------------ health
class _HealthBar:
    """Health-check progress on stderr: a tqdm bar of questions on a terminal, one plain line
    off a terminal. ``quiet``: nothing."""

    FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} questions {elapsed}<{remaining}"

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.bar = None
        self.said = False

    def __call__(self, p) -> None:
        if self.quiet or p.stage != "probe":
            return
        if not self.tty:
            if not self.said:
                print(f"  asking {p.total} sample questions", file=self.stream, flush=True)
                self.said = True
            return
        if self.bar is None:
            self.bar = _tqdm_class()(total=p.total, file=self.stream, dynamic_ncols=True, leave=False,
                                     bar_format=self.FORMAT, mininterval=0.1, desc="asking")
        self.bar.update(p.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_health(args) -> int:
    from desktop.errors import SprigError
    from desktop.rag.probes import check_collection
    from desktop.rag.types import CancelToken

    lib = _library(args)
    if args.collection not in lib.collections():
        raise SprigError(f"there is no collection named '{args.collection}' (`sprig docs` lists them)")
    bar = _HealthBar(quiet=args.quiet or args.json)
    cancel = CancelToken()
    try:
        report = check_collection(lib, args.collection, progress=bar, cancel=cancel, refresh=args.refresh)
    except KeyboardInterrupt:
        cancel.cancel()
        print("interrupted: no result kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    if args.json:
        data = report.as_json()
        if not args.verbose:
            data.pop("questions")
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EXIT_OK if report.probes else EXIT_FAILED
    if not report.probes:
        error(f"nothing to check: the collection '{args.collection}' has no indexed text to ask about "
              "(sprig index PATH)")
        return EXIT_FAILED
    share = f"{report.found / report.probes:.0%}"
    print(f"{report.message[:-1]} ({share}) in collection '{printable(args.collection)}', "
          f"{len(report.documents)} document(s).")
    worst = report.worst
    if worst:
        print("\nDocuments that do worst:")
        for d in worst:
            print(f"  {d.found}/{d.probes}  {printable(d.path)}\n        {printable(d.reason)}")
    if args.verbose:
        missed = [o for o in report.outcomes if not o.found]
        if missed:
            print("\nQuestions whose page was not in the top 5:")
        for o in missed:
            source = Path(o.probe.path).name + (f", page {o.probe.page}" if o.probe.page else "")
            if not o.probe.query:
                print(f"  no question could be made ({printable(source)}: no sentence of dictionary words)")
                continue
            first = Path(o.top_path).name + (f", page {o.top_page}" if o.top_page else "") if o.top_path else "nothing"
            print(f'  "{printable(o.probe.query)}"  ({printable(source)}; first hit: {printable(first)})')
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.created))
    note(args, f"checked {when}, in {report.seconds:.0f} s" + (" (unchanged since; --refresh asks again)"
                                                               if report.cached else ""))
    return EXIT_OK


# ------------------------------------------------------------------ arguments
class _UsageError(Exception):
    """A wrong command line found after parsing (exit 2, like argparse's own)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, then exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _global_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (`sprig -q index` = `sprig index -q`)."""
    common = _Parser(add_help=False)
    common.add_argument("--data-dir", metavar="FOLDER", default=argparse.SUPPRESS,
                        help="use this data folder (index, chats, settings, models) instead of "
                             "$SPRIG_HOME or the user data folder")
    loud = common.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                      help="print only results and errors: no progress, warnings or summaries")
    loud.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                      help="say more: every file indexed, full passages, answer timings, Sprig's "
                           "log (-vv: debug log)")
    return common


def _command(sub, common, name: str, help_text: str, examples: str, func, **kw):
    p = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
                       epilog="examples:\n" + examples, parents=[common],
                       formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = _Parser(
        prog="sprig", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Chat with your own documents, offline. Index files and folders, search them, "
                    "and ask questions answered from them with a small local model, citing file and page.",
        epilog="examples:\n"
               "  sprig index ~/Documents/manuals\n"
               '  sprig ask "How often is the pump serviced?"\n'
               "  sprig COMMAND --help      (options and examples of one command)\n\n" + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"sprig {__version__}",
                        help="print Sprig's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (`sprig COMMAND --help` shows its options and examples)")

    p = _command(sub, common, "index", "index files and folders (recursively); run again to pick up changes",
                 "  sprig index report.pdf notes/\n"
                 "  sprig index --collection work ~/work/manuals\n"
                 "  sprig index --json ~/papers > summary.json", cmd_index)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a file (PDF, DOCX, EPUB, HTML, Markdown, text...) or a folder, read recursively "
                        "and kept in sync on later runs")
    p.add_argument("--collection", default="default", metavar="NAME",
                   help="the collection to add them to (default: default)")
    p.add_argument("--json", action="store_true",
                   help="print the outcome as JSON: indexed, unchanged, removed, failed (path, reason), "
                        "pages, chunks, seconds, cancelled")

    p = _command(sub, common, "search", "show the passages that best match a query",
                 '  sprig search "pump maintenance interval"\n'
                 '  sprig search -k 10 --mode keyword "ISO 9001"\n'
                 '  sprig search --json "warranty" | jq ".[0].path"', cmd_search)
    p.add_argument("query", help="words or a question")
    p.add_argument("-k", type=int, default=5, metavar="N", help="how many passages (default: 5)")
    p.add_argument("--collection", default="default", metavar="NAME",
                   help="the collection to search (default: default)")
    p.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid",
                   help="hybrid: meaning and keywords fused (default); vector: meaning only; "
                        "keyword: BM25 only")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list: path, page, text, score, similarity, bm25, char_start, "
                        "char_end, chunk_id")

    p = _command(sub, common, "docs", "list indexed documents, with their status and why any failed",
                 "  sprig docs\n  sprig docs --collection work --json", cmd_docs)
    p.add_argument("--collection", default=None, metavar="NAME",
                   help="only this collection (default: all)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list: path, collection, status, reason, code, pages, chunks, size, "
                        "indexed_at, added_by and on_this_pc (a shared library)")

    p = _command(sub, common, "remove", "remove files or folders from the index (the files stay on disk)",
                 "  sprig remove old-report.pdf\n  sprig remove --collection work ~/work/archive",
                 cmd_remove)
    p.add_argument("paths", nargs="+", metavar="PATH", help="an indexed file, or a folder: everything under it")
    p.add_argument("--collection", default=None, metavar="NAME",
                   help="only from this collection (default: all)")

    p = _command(sub, common, "ask", "answer a question from the indexed documents, citing file and page",
                 '  sprig ask "When is the generator tested?"\n'
                 '  sprig ask --model bundled-gemma --json "Who signed the lease?"\n'
                 '  sprig ask --chat "Pump manual" "How often is the seal replaced?"', cmd_ask)
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--collection", default=None, metavar="NAME",
                   help="the collection to answer from (default: the chat's, else default)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="bundled-qwen, bundled-gemma (faster, weaker), or a GGUF file "
                        "(default: the one in settings)")
    p.add_argument("--general-knowledge", action="store_true",
                   help="let the model answer from its own knowledge when the documents don't")
    p.add_argument("--chat", metavar="TITLE", default=None,
                   help="add the question and answer to the saved chat with this title (created if "
                        "missing; earlier questions in it are the context); the window shows it")
    p.add_argument("--json", action="store_true",
                   help="print the answer as JSON: answer, abstained, mode, citations, claims, evidence "
                        "(each source with path, page, text), and chat when --chat is given")

    p = _command(sub, common, "summarize",
                 "summarize a whole indexed document (or collection), every point citing its pages",
                 "  sprig summarize report.pdf\n"
                 "  sprig summarize --task 'list every deadline' contract.pdf\n"
                 "  sprig summarize --collection work --json > work-summary.json", cmd_summarize)
    p.add_argument("file", nargs="?", default=None, metavar="FILE",
                   help="an indexed file (without it: every document of --collection)")
    p.add_argument("--collection", default=None, metavar="NAME",
                   help="the collection the file is in (default: wherever it is indexed); without FILE, "
                        "the collection to summarize whole")
    p.add_argument("--task", default=None, metavar="TEXT",
                   help="instead of a summary, pull this out of the whole text, e.g. 'list every risk "
                        "factor' or 'what does it say about pensions'")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="bundled-qwen, bundled-gemma (faster, weaker), or a GGUF file "
                        "(default: the one in settings)")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON: summary, points (text, citations with path, page, "
                        "text), sections, sections_done, stopped, dropped, timings")

    p = _command(sub, common, "chats", "list saved chats (the window's and `ask --chat`'s), or export one",
                 "  sprig chats\n  sprig chats --json\n  sprig chats export 3 > pump-chat.md",
                 cmd_chats)
    p.add_argument("--json", action="store_true",
                   help="print a JSON list: id, title, collection, messages, created, updated")
    actions = p.add_subparsers(dest="action", metavar="ACTION",
                               help="export: print one chat as Markdown (without an action: list them)")
    e = actions.add_parser("export", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                           help="print one chat as Markdown, every citation with its file, page and quote",
                           description="Print one chat as Markdown: each question and answer, and every "
                                       "citation resolved to its file, page and quote.",
                           epilog="examples:\n  sprig chats export 3\n  sprig chats export 3 > chat.md")
    e.add_argument("id", type=int, metavar="ID", help="the chat's id (the first column of `sprig chats`)")
    p.set_defaults(needs_lock=False)  # reading chats is safe while the window writes them

    p = _command(sub, common, "health",
                 "check how well Sprig finds things in a collection: sample questions made from its own "
                 "passages, and whether search brings back their page",
                 "  sprig health\n"
                 "  sprig health --collection work -v\n"
                 "  sprig health --json | jq .worst_documents", cmd_health)
    p.add_argument("--collection", default="default", metavar="NAME",
                   help="the collection to check (default: default)")
    p.add_argument("--refresh", action="store_true",
                   help="ask again even if the collection has not changed since the last check")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON: message, probes, found, recall_at_5, worst_documents "
                        "(path, recall, probes, found, code, reason, signs), documents, seconds, cached; "
                        "with -v also every question")

    p = _command(sub, common, "library",
                 "say where the library is kept; move it to a Chroma server (shared with colleagues) "
                 "or back to this PC, without re-embedding",
                 "  sprig library\n"
                 "  sprig library --to-server http://chroma.office.lan:8000 --token SECRET\n"
                 "  sprig library --to-local", cmd_library)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--to-server", metavar="URL", default=None,
                       help="copy every document (vectors as they are) to the Chroma server at URL, "
                            "then use it")
    where.add_argument("--to-local", action="store_true",
                       help="copy every document of the shared library into this PC's data folder, "
                            "then use it")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="with --to-server: sent as 'Authorization: Bearer TOKEN'")
    p.add_argument("--json", action="store_true", help="print where the library is as JSON")

    p = _command(sub, common, "check", "check that the catalog and the vector store agree",
                 "  sprig check\n  sprig check --repair", cmd_check)
    p.add_argument("--repair", action="store_true",
                   help="restore a damaged catalog from its last good copy, rebuild a damaged vector store "
                        "from the catalog and re-queue interrupted files")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.quiet = bool(getattr(args, "quiet", False))
    args.verbose = int(getattr(args, "verbose", 0) or 0)
    if args.quiet and args.verbose:
        build_parser().error("-q and -v cannot be used together")
    return args


def _configure_logging(args) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("desktop").setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)


def _use_data_dir(folder: str) -> None:
    """``--data-dir``: the same as SPRIG_HOME, for this process and every child it starts."""
    path = Path(folder).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise _UsageError(f"--data-dir {printable(str(path))} is not a folder")
    os.environ["SPRIG_HOME"] = str(path)


def main(argv: list[str] | None = None) -> int:
    from desktop.config import enforce_offline

    enforce_offline()
    args = parse_args(argv)
    try:
        if getattr(args, "data_dir", None):
            _use_data_dir(args.data_dir)
        return _run(args)
    except _UsageError as exc:
        print(f"sprig: error: {exc} (see `sprig --help`)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args) -> int:
    import sqlite3

    from desktop.config import Paths, record_native_crashes
    from desktop.errors import SprigError, StoreError
    from desktop.lock import DataFolderLock, hand_off

    _configure_logging(args)
    try:
        paths = Paths.default()
    except OSError as exc:
        error(f"the data folder cannot be used: {exc}")
        return EXIT_ERROR
    record_native_crashes(paths)
    lock = DataFolderLock(paths.lock)
    if getattr(args, "needs_lock", True) and not lock.acquire():
        # the window (or another sprig command) owns this data folder: one writer at a time
        if args.command == "index" and hand_off(paths.root, args.paths):
            print(f"Sprig's window is open on {printable(str(paths.root))}: it is indexing the "
                  f"{len(args.paths)} item(s) there (see its Documents panel).")
            return EXIT_OK
        error(f"Sprig is already using the data folder {paths.root} ({lock.owner()}). Close the window "
              "(or wait for the other sprig command) and try again, or use the window.")
        return EXIT_IN_USE
    try:
        return args.func(args)
    except BrokenPipeError:  # `sprig docs | head`: the reader has gone, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except StoreError as exc:
        from desktop.errors import CatalogDamaged, DataFolderUnwritable, DiskFull, StoreUnavailable

        if isinstance(exc, StoreUnavailable):
            error(f"{exc}. Nothing on this PC is lost: what was not written waits in the queue; run the "
                  "same command again when the server is back (the window resumes by itself).")
        elif isinstance(exc, (CatalogDamaged, DataFolderUnwritable, DiskFull)):
            error(str(exc))
        else:
            error(f"{exc}; run `sprig check --repair` to rebuild the vector store")
        return EXIT_ERROR
    except sqlite3.DatabaseError as exc:  # damage found while reading
        from desktop.rag.catalog import classify_error

        error(str(classify_error(paths.catalog, exc)))
        return EXIT_ERROR
    except SprigError as exc:
        error(str(exc))
        return EXIT_ERROR
    except OSError as exc:  # a folder Sprig needs could not be created or written
        error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_ERROR
    finally:
        lock.release()
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            pass


if __name__ == "__main__":
    sys.exit(main())
