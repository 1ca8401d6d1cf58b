"""Start-up health check of the vector store, with repair from the catalog.

Chroma is a rebuildable cache; the catalog is the source of truth. A Chroma folder damaged
by a kill during a flush can fail to open, raise on every query, or crash the process that
reads it (a corrupt HNSW index can SIGSEGV), so it is checked in a separate process first:
open, count, fetch a sample of the vectors the catalog expects (with their embeddings) and
run one query. If that fails, crashes or hangs, the folder is moved aside (kept, with a
timestamp) and every vector is rebuilt from the chunk text in the catalog.

The app calls ``ensure_store(paths, settings, progress)`` once at start, before it opens a
``Library`` (and after it holds the single-instance lock).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from desktop.child import TIMEOUT, ChildDied, child_process
from desktop.config import Paths, Settings, aside_name
from desktop.rag.types import Progress

SAMPLE_PER_COLLECTION = 64
SELF_QUERIES = 16


@dataclass
class StoreCheck:
    """What the checker process saw. ``ok`` False means the store must be rebuilt."""

    ok: bool
    reason: str = ""
    damaged: bool = False  # unreadable (error, crash, hang), not merely missing vectors
    counts: dict[str, int] = field(default_factory=dict)  # Sprig collection -> vectors
    seconds: float = 0.0


@dataclass
class StoreReport:
    """The outcome of ``ensure_store``.

    status: "ok" (nothing to do), "rebuilt" (vectors re-created from the catalog; ``reason``
    says why and ``moved_to`` where the damaged folder went, if it was moved).
    requeued: documents caught mid-write by a crash; they are queued again (call
    ``Library.resume()`` to index them, unless the app starts in safe mode).
    """

    status: str
    reason: str = ""
    moved_to: Path | None = None
    rebuilt_chunks: int = 0
    requeued: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def message(self) -> str:
        """One line for the user, empty when there is nothing to say."""
        if self.status == "rebuilt":
            return f"The search index was damaged and has been rebuilt ({self.rebuilt_chunks} passages)."
        return ""


# ------------------------------------------------------------------ the checker process
def _check_child(conn, chroma_dir: str, expected: dict[str, tuple[int, list[str]]]) -> None:
    """Runs in a separate process: any crash here costs only this process."""
    try:
        from desktop.config import enforce_offline

        enforce_offline()
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        from desktop.rag.vectorstore import chroma_name

        client = chromadb.PersistentClient(
            path=chroma_dir, settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
        )
        existing = {c.name for c in client.list_collections()}
        counts: dict[str, int] = {}
        problems: list[str] = []
        damaged = False
        for name, (catalog_chunks, sample) in expected.items():
            cname = chroma_name(name)
            if cname not in existing:
                counts[name] = 0
                if catalog_chunks:
                    problems.append(f"collection '{name}' is missing ({catalog_chunks} passages expected)")
                continue
            col = client.get_collection(cname)
            count = int(col.count())
            counts[name] = count
            if count < catalog_chunks:
                problems.append(f"collection '{name}' holds {count} of {catalog_chunks} vectors")
            if sample:
                got = col.get(ids=sample, include=["embeddings"])
                found = set(got["ids"])
                embeddings = got["embeddings"]
                if len(found) < len(set(sample)):
                    problems.append(
                        f"collection '{name}': {len(set(sample)) - len(found)} of {len(sample)} sampled vectors missing"
                    )
                if embeddings is None or len(embeddings) != len(got["ids"]):
                    problems.append(f"collection '{name}': vectors unreadable")
                    damaged = True
                elif len(embeddings):
                    # each stored vector must find itself: a damaged graph or length file
                    # still opens, but answers with the wrong neighbours
                    probes = [list(e) for e in embeddings[:SELF_QUERIES]]
                    result = col.query(query_embeddings=probes, n_results=1, include=["distances"])
                    misses = sum(1 for d in result["distances"] if not d or d[0] > 1e-3)
                    if misses * 4 > len(probes):
                        problems.append(
                            f"collection '{name}': the index returns wrong neighbours "
                            f"({misses} of {len(probes)} vectors do not find themselves)"
                        )
                        damaged = True
            elif count:
                col.get(limit=8, include=["embeddings"])
        conn.send(("ok" if not problems else "bad", "; ".join(problems), counts, damaged))
    except BaseException as exc:  # noqa: BLE001 - report, never hang
        try:
            conn.send(("error", f"{type(exc).__name__}: {str(exc)[:300]}", {}, True))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


def _expected_from_catalog(catalog_path: Path, sample: int) -> dict[str, tuple[int, list[str]]]:
    """Per collection: (chunks of indexed documents, a random sample of their ids)."""
    if not catalog_path.exists():
        return {}
    db = sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT d.collection, c.chunk_id FROM chunks c JOIN documents d ON d.id=c.doc_id "
            "WHERE d.status='indexed'"
        ).fetchall()
    except sqlite3.DatabaseError:
        return {}
    finally:
        db.close()
    by_coll: dict[str, list[str]] = {}
    for coll, cid in rows:
        by_coll.setdefault(coll, []).append(cid)
    rnd = random.Random()
    return {c: (len(ids), rnd.sample(ids, min(sample, len(ids)))) for c, ids in by_coll.items()}


def check_store(paths: Paths, timeout_s: float = 60.0, sample: int = SAMPLE_PER_COLLECTION) -> StoreCheck:
    """Check the Chroma folder in a child process; never raises, never crashes the caller."""
    started = time.monotonic()
    expected = _expected_from_catalog(paths.catalog, sample)
    chroma_dir = paths.chroma
    if not chroma_dir.exists() and not any(n for n, _ in expected.values()):
        return StoreCheck(True, seconds=time.monotonic() - started)
    with child_process(_check_child, (str(chroma_dir), expected), "sprig-store-check") as job:
        try:
            message = job.receive(timeout_s)
        except ChildDied as died:
            return StoreCheck(False, _exit_reason(died.exitcode), True, seconds=time.monotonic() - started)
    if message is TIMEOUT:
        return StoreCheck(False, f"checking the vector store took longer than {timeout_s:.0f} s", True,
                          seconds=time.monotonic() - started)
    kind, detail, counts, damaged = message
    if kind == "ok":
        return StoreCheck(True, "", False, counts, time.monotonic() - started)
    if kind == "error":
        detail = f"the vector store cannot be read ({detail})"
    return StoreCheck(False, detail, damaged, counts, time.monotonic() - started)


def _writable(folder: Path) -> bool:
    import os

    chroma = folder / "chroma"
    targets = [folder] + ([chroma] if chroma.exists() else [])
    return all(os.access(t, os.W_OK | os.X_OK) for t in targets)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"the vector store crashed the checker (signal {-code})"
    return f"the vector store checker exited unexpectedly (exit {code})"


# ------------------------------------------------------------------ repair
def move_aside(chroma_dir: Path) -> Path | None:
    """Rename a damaged Chroma folder to chroma.damaged-YYYYmmdd-HHMMSS (kept, not deleted)."""
    if not chroma_dir.exists():
        return None
    target = aside_name(chroma_dir, "damaged")
    chroma_dir.rename(target)
    return target


@dataclass
class CatalogRepair:
    status: str  # "ok" | "restored" (from the last good copy) | "reset" (no usable copy: empty)
    moved_to: Path | None = None
    documents: int = 0


def _usable_copy(path: Path) -> bool:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.execute("SELECT count(*) FROM documents").fetchone()
            return ok
        finally:
            db.close()
    except sqlite3.Error:
        return False


def repair_catalog(paths: Paths) -> CatalogRepair:
    """Make the catalog usable again: keep the damaged file aside and restore the last good copy.

    Permission problems raise ``DataFolderUnwritable`` and move nothing: they are not damage.
    Documents indexed after that copy was made come back with the next sync of their folders.
    """
    from desktop.errors import CatalogDamaged
    from desktop.rag.catalog import Catalog

    try:
        Catalog(paths.catalog).close()
        if _usable_copy(paths.catalog):
            return CatalogRepair("ok")
    except CatalogDamaged:
        pass
    moved = aside_name(paths.catalog, "damaged")
    paths.catalog.rename(moved)
    for suffix in ("-wal", "-shm"):  # journals belong to the damaged file
        side = paths.catalog.with_name(paths.catalog.name + suffix)
        if side.exists():
            side.rename(moved.with_name(moved.name + suffix))
    if paths.catalog_backup.exists() and _usable_copy(paths.catalog_backup):
        import shutil

        shutil.copy2(paths.catalog_backup, paths.catalog)
        status = "restored"
    else:
        status = "reset"
    catalog = Catalog(paths.catalog)
    try:
        documents = len(catalog.documents())
        # the vectors no longer match: rebuild them from the restored chunk text at the next check
        catalog.set_meta("vector_rebuild_pending", "1")
    finally:
        catalog.close()
    return CatalogRepair(status, moved, documents)


def ensure_store(
    paths: Paths | None = None,
    settings: Settings | None = None,
    progress: Callable[[Progress], None] | None = None,
    embedder=None,
    timeout_s: float = 60.0,
    library=None,
) -> StoreReport:
    """Make the vector store usable before the app opens its Library.

    1. Check Chroma in a child process (``check_store``).
    2. If it is damaged: move the folder aside and rebuild every vector from the catalog,
       calling ``progress(Progress("rebuild", 1, 1, collection, chunks=N, chunks_done=n))``.
       A rebuild left unfinished by an earlier kill, or a changed embedding model, is
       redone the same way (without moving anything).
    3. ``Library.recover()``: documents caught mid-write are queued again, orphan vectors go.

    ``embedder`` is the app's Embedder (loaded only if a rebuild needs it). ``library`` is the
    app's own Library, if it has one open already (its vector store is released before the
    folder moves). Never raises for a damaged store; raises only if the catalog itself cannot
    be opened.
    """
    from desktop.rag.library import Library

    started = time.monotonic()
    paths = paths or Paths.default()
    settings = settings or Settings.load(paths.settings)
    report = StoreReport("ok")
    if progress:
        progress(Progress("check", 1, 1, str(paths.chroma)))
    if not settings.chroma_url:
        check = check_store(paths, timeout_s)
        if not check.ok and not _writable(paths.root):
            from desktop.errors import DataFolderUnwritable

            # a permission problem is not damage: never move a healthy store aside for it
            raise DataFolderUnwritable(
                f"Sprig cannot write to its data folder {paths.root} (permission denied). Your "
                "documents and index are untouched: give your user write access to that folder.")
        if not check.ok:
            report.status = "rebuilt"
            report.reason = check.reason
            if check.damaged:
                if library is not None:
                    library.store.close()
                report.moved_to = move_aside(paths.chroma)
    owned = library is None
    if owned:
        library = Library(paths, settings, embedder=embedder)
    try:
        if report.status == "rebuilt" or library.needs_rebuild:
            if report.status != "rebuilt":
                report.status = "rebuilt"
                report.reason = "an earlier rebuild did not finish, or the embedding model changed"
            report.rebuilt_chunks = library.rebuild_vectors(progress=progress)
        report.requeued = library.recover()
    finally:
        if owned:
            library.close()
    report.seconds = time.monotonic() - started
    return report

