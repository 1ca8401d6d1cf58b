"""kill -9 at any moment: the next start is clean and nothing acknowledged is lost (RELIABILITY.md F1, F1c).

* Indexing: a child indexes a folder of real files (new, changed, deleted and bad ones) on top
  of an existing library and is SIGKILLed at a random moment: at a random time, or just as it
  writes the k-th document. The next start does what the app does (health check in a
  subprocess, rebuild if damaged, recover, resume, folder sync) and the store must be
  consistent: every indexed document has all its vectors, no orphans, no duplicates, every
  document acknowledged before the kill present, earlier documents untouched.
* kill -9 in a document's vector phase (its chunks committed, searchable by keyword, part of
  its vectors written): it is honestly marked ``embedding``, holds each chunk once, and the
  next start writes only its missing vectors, without parsing it again.
* The same write sequence with a simulated crash at every single write (SQLite's "fail at N"
  loop), before and after the write.
* Chat history and settings: every acknowledged message is present; settings always parse.

KILL_RUNS (default 5) sets the indexing runs of the default suite; the nightly marker runs
NIGHTLY_KILL_RUNS (default 100) more, half of them with a flush-heavy Chroma configuration.
Set SPRIG_RELIABILITY_METRICS=path.json to write the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from desktop.config import Paths, Settings
from desktop.rag.health import ensure_store
from desktop.rag.library import Library, chunk_id, file_sha256
from tests.conftest import eval_path
from tests.helpers import hostile
from tests.helpers.kill_driver import message_text
from tests.rag.test_health import flush_heavy_collection

REPO = Path(__file__).resolve().parents[2]
KILL_RUNS = int(os.environ.get("KILL_RUNS", "5"))
NIGHTLY_KILL_RUNS = int(os.environ.get("NIGHTLY_KILL_RUNS", "100"))
CHAT_RUNS = int(os.environ.get("CHAT_KILL_RUNS", "10"))
NIGHTLY_CHAT_RUNS = int(os.environ.get("NIGHTLY_CHAT_KILL_RUNS", "200"))
CLEAN = {"missing_vectors": 0, "orphan_vectors": 0, "in_flight": 0, "catalog_ok": True}

METRICS: dict[str, Counter] = {"index": Counter(), "chat": Counter(), "settings": Counter()}


@pytest.fixture(scope="module", autouse=True)
def _report_metrics():
    yield
    path = os.environ.get("SPRIG_RELIABILITY_METRICS")
    figures = {k: dict(v) for k, v in METRICS.items() if v}
    if path and figures:
        old = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        for kind, counts in figures.items():
            merged = Counter(old.get(kind, {}))
            merged.update(counts)
            old[kind] = dict(merged)
        Path(path).write_text(json.dumps(old, indent=2, sort_keys=True))
    if figures:
        print("\nkill figures:", json.dumps(figures, sort_keys=True))


# ------------------------------------------------------------------ the corpus
def _articles() -> list[str]:
    folder = eval_path("squad_v1.1_dev", "derived", "articles")
    return [p.read_text() for p in sorted(folder.glob("*.txt"))[:12]]


def write_base(folder: Path, size: int) -> None:
    """The library as it was before the run that gets killed."""
    art = _articles()
    (folder / "a.txt").write_text(art[0][:size])
    (folder / "b.txt").write_text(art[1][:size])
    (folder / "c.txt").write_text(art[2][:size])
    (folder / "d.pdf").write_bytes(hostile.good_pdf_bytes(2))
    (folder / "e.md").write_text(art[3][:size])
    (folder / "encrypted.pdf").write_bytes(hostile.encrypted_pdf(hostile.good_pdf_bytes(1), "pw"))


def mutate(folder: Path, size: int, real_pdfs: bool) -> None:
    """What changed since: one file edited, one deleted, one turned to junk, new files added."""
    art = _articles()
    (folder / "b.txt").write_text(art[4][:size])
    (folder / "c.txt").unlink()
    (folder / "e.md").write_bytes(hostile.binary_blob(9, 4096))
    (folder / "f.txt").write_text(art[5][:size])
    (folder / "g.txt").write_text(art[6][:size])
    (folder / "junk.pdf").write_bytes(hostile.binary_blob(8, 5000))
    if real_pdfs:
        for name, sub in (("pdflatex-4-pages.pdf", "004-pdflatex-4-pages"),
                          ("minimal-document.pdf", "001-trivial")):
            shutil.copy(eval_path("pdfs", "py-pdf-sample-files", sub, name), folder / name)


EXPECTED_FAILED = {"e.md": "binary", "encrypted.pdf": "encrypted", "junk.pdf": "damaged"}
UNCHANGED = ("a.txt", "d.pdf")


class Base:
    """A closed, indexed library to copy for each run, and its documents.

    Chunk ids depend on a document's absolute path, so every run re-creates the documents
    under the same path (runs in one module are sequential) and copies the data folder.
    """

    def __init__(self, root: Path, embedder, size: int, flush_heavy: bool):
        self.home = root / "home"
        self.pristine = root / "pristine"
        self.docs = root / "docs"
        self.docs.mkdir(parents=True)
        self.size = size
        write_base(self.docs, size)
        paths = Paths(self.home)
        if flush_heavy:
            flush_heavy_collection(paths.chroma, embedder.model_id)
        library = Library(paths, Settings(), embedder=embedder)
        summary = library.index([self.docs])
        assert set(Path(p).name for p in summary.failed) == {"encrypted.pdf"}
        assert not library.index([self.docs / "a.txt"], collection="other").failed
        assert library.consistency_report() == CLEAN
        self.baseline = {Path(d.path).name: set(library.catalog.chunk_ids(d.id))
                         for d in library.documents("default")}
        library.close()
        shutil.copytree(self.docs, self.pristine, copy_function=shutil.copy2)

    def copy(self, target: Path, real_pdfs: bool) -> tuple[Path, Path]:
        """A fresh data folder under ``target`` and the documents, changed since the base."""
        home = target / "home"
        shutil.copytree(self.home, home)
        shutil.rmtree(self.docs, ignore_errors=True)
        shutil.copytree(self.pristine, self.docs, copy_function=shutil.copy2)  # same size and mtime
        mutate(self.docs, self.size, real_pdfs)
        return home, self.docs


@pytest.fixture(scope="module")
def base_default(tmp_path_factory, embedder):
    return Base(tmp_path_factory.mktemp("kill-base"), embedder, 2500, flush_heavy=False)


@pytest.fixture(scope="module")
def base_flush_heavy(tmp_path_factory, embedder):
    return Base(tmp_path_factory.mktemp("kill-base-flush"), embedder, 2500, flush_heavy=True)


# ------------------------------------------------------------------ the invariant check
def assert_store_consistent(library: Library, docs: Path, base: Base, acknowledged: set[str],
                            synced: bool = True) -> None:
    """RELIABILITY.md §10.1: all vectors, no orphans, no duplicates, nothing acknowledged lost.

    After recover() and resume() every file the catalog knows is indexed with its current
    content (or failed with its reason); after a folder sync, new files are in and files
    deleted from disk are gone.
    """
    assert library.consistency_report() == CLEAN
    collections = set(library.catalog.collections())
    assert set(library.store.collection_names()) <= collections, "a deleted collection kept its vectors"
    catalog = {Path(d.path).name: d for d in library.documents("default")}
    on_disk = {p.name for p in docs.iterdir()}
    if synced:
        assert set(catalog) == on_disk, (set(catalog) ^ on_disk)
    col = library.store.collection("default")
    stored = col.get(include=["metadatas"])
    owner = dict(zip(stored["ids"], (m["doc_id"] for m in stored["metadatas"]), strict=True))
    assert len(owner) == len(stored["ids"]) == library.catalog.count_chunks("default")
    for name, doc in catalog.items():
        path = docs / name
        ids = set(library.catalog.chunk_ids(doc.id))
        assert all(owner[i] == doc.id for i in ids), f"{name}: vectors owned by another document"
        if not path.exists():
            continue  # deleted from disk: removed by the next folder sync
        if name in EXPECTED_FAILED:
            assert (doc.status, doc.code) == ("failed", EXPECTED_FAILED[name]), (name, doc.status, doc.reason)
            assert not ids
            continue
        assert doc.status == "indexed", (name, doc.status, doc.reason)
        digest = file_sha256(path)
        assert doc.content_hash == digest, f"{name} indexed with stale content"
        assert ids == {chunk_id("default", str(path), digest, seq) for seq in range(doc.chunks)}
        if name in UNCHANGED:
            assert ids == base.baseline[name], f"{name} lost or changed its chunks"
    if "other" in collections:  # the second collection is whole or gone, never half
        other = library.documents("other")
        assert [Path(d.path).name for d in other] == ["a.txt"] and other[0].status == "indexed"
    for path in acknowledged:
        name = Path(path).name
        assert catalog[name].status in ("indexed", "failed"), name


def next_start(library: Library, docs: Path, base: Base, acknowledged: set[str]) -> None:
    """What the app does on start after recover(): resume, check, sync folders, check again."""
    library.resume()
    assert_store_consistent(library, docs, base, acknowledged, synced=False)
    library.sync_folders()
    assert_store_consistent(library, docs, base, acknowledged, synced=True)


# ------------------------------------------------------------------ one kill run
class Child:
    """A driver process whose stdout lines are collected with their arrival time."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.kill_driver", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: list[tuple[float, str]] = []
        self.err: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._new:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._new:
            while not any(predicate(line) for _, line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not predicate("")):
                    return any(predicate(line) for _, line in self.lines)
                self._new.wait(min(left, 0.05))
            return True

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running."""
        import psutil

        alive = self.proc.poll() is None
        children = []
        if alive:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(self.proc.pid).children(recursive=True)
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        # whatever it started (the parser process) must not outlive it
        _, alive_children = psutil.wait_procs(children, timeout=10)
        assert not alive_children, f"processes outlived the killed app: {alive_children}"
        time.sleep(0.05)  # let the reader threads drain the pipes
        return alive

    def network_attempts(self) -> list[str]:
        return [line for line in self.err if line.startswith("NETWORK")]


def kill_indexing_run(base: Base, embedder, seed: int, workdir: Path, real_pdfs: bool = True) -> str:
    rnd = random.Random(seed)
    home, docs = base.copy(workdir, real_pdfs)
    child = Child("index", str(home), str(docs))
    try:
        assert child.wait_for(lambda line: line == "ready", 120), "".join(child.err)[-3000:]
        ready = time.monotonic()
        strategy = seed % 4
        if strategy == 0:      # early: scanning, deleting, parsing, loading the embedder
            time.sleep(rnd.uniform(0.05, 2.0))
        elif strategy == 1:    # anywhere: shortly after the j-th progress step
            j = rnd.randint(1, 24)
            child.wait_for(lambda line: len(child.lines) > j, 120)
            time.sleep(rnd.uniform(0.0, 0.4))
        elif strategy == 2:    # the k-th document parsed, its chunks being committed
            k = rnd.randint(1, 5)
            child.wait_for(lambda line: sum(1 for _, x in child.lines if x.startswith("parse\t")) >= k, 120)
            time.sleep(rnd.uniform(0.0, 0.3))
        else:                  # in the vector phase of the k-th document (its chunks committed)
            k = rnd.randint(1, 5)
            child.wait_for(lambda line: sum(1 for _, x in child.lines if x.startswith("store\t")) >= k, 120)
            time.sleep(rnd.uniform(0.0, 0.06))
        killed = child.kill()
        elapsed = time.monotonic() - ready
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    assert not child.network_attempts(), child.network_attempts()
    assert not [x for x in child.err if "Traceback" in x], "".join(child.err)[-3000:]
    acknowledged = {line.split("\t", 1)[1] for _, line in child.lines if line.startswith(("done\t", "fail\t"))}

    # the next start, as the app does it
    started = time.monotonic()
    report = ensure_store(Paths(home), Settings(), embedder=embedder, timeout_s=120)
    library = Library(Paths(home), Settings(), embedder=embedder)
    try:
        next_start(library, docs, base, acknowledged)
        assert library.search("Page 1 of the bolt manual", k=3)
    finally:
        library.close()
    recovered_s = time.monotonic() - started
    outcome = "killed" if killed else "finished-before-kill"
    METRICS["index"].update({
        "runs": 1, "kills": int(killed), f"health_{report.status}": 1, "lost": 0,
        "files_tried": len(list(docs.iterdir())) + 1,  # + the file deleted before the run
        "acknowledged_before_kill": len(acknowledged), f"strategy_{strategy}": 1,
        "requeued_at_restart": len(report.requeued),
    })
    shutil.rmtree(workdir / "home", ignore_errors=True)
    return (f"{outcome} after {elapsed:.1f}s, {len(acknowledged)} acked, {len(report.requeued)} requeued, "
            f"health {report.status}, recovered in {recovered_s:.1f}s")


@pytest.mark.parametrize("seed", range(KILL_RUNS))
def test_kill9_during_indexing(base_default, base_flush_heavy, embedder, tmp_path, seed):
    base = base_flush_heavy if seed % 2 else base_default
    print(kill_indexing_run(base, embedder, seed, tmp_path))


@pytest.mark.nightly
@pytest.mark.parametrize("seed", range(1000, 1000 + NIGHTLY_KILL_RUNS))
def test_kill9_during_indexing_nightly(base_default, base_flush_heavy, embedder, tmp_path, seed):
    base = base_flush_heavy if seed % 2 else base_default
    print(kill_indexing_run(base, embedder, seed, tmp_path))


def test_kill9_in_the_vector_phase_leaves_a_keyword_only_document_that_resumes(tmp_path, embedder):
    from desktop.rag.library import EMBED_BATCH
    from tests.helpers.embedders import CountingEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    long = docs / "long.txt"
    long.write_text("\n\n".join(_articles()[:3]), encoding="utf-8")  # a few batches of chunks
    home = tmp_path / "home"
    child = Child("index", str(home), str(docs), env={"KILL_DRIVER_EMBED_DELAY_S": "0.5"})

    def stored_batch(line: str) -> bool:  # "embed\tPATH\tDONE/CHUNKS": a first batch of vectors written
        return line.startswith("embed\t") and int(line.rsplit("\t", 1)[1].split("/")[0]) >= EMBED_BATCH

    try:
        assert child.wait_for(lambda line: line == "ready", 120), "".join(child.err)[-3000:]
        assert child.wait_for(stored_batch, 300), "".join(child.err)[-3000:]
        time.sleep(0.2)  # into the next batch
        assert child.kill()
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    assert not [x for x in child.err if "Traceback" in x], "".join(child.err)[-3000:]
    assert not [line for _, line in child.lines if line.startswith(("done\t", "fail\t"))]

    counting = CountingEmbedder(embedder)
    library = Library(Paths(home), Settings(), embedder=counting)
    try:
        # honestly marked: keyword search only, each chunk once, part of the vectors
        doc = library.documents()[0]
        assert (doc.path, doc.status) == (str(long), "embedding")
        ids = library.catalog.chunk_ids(doc.id)
        digest = file_sha256(long)
        assert ids == [chunk_id("default", str(long), digest, seq) for seq in range(doc.chunks)]
        assert library.catalog.count_chunks() == doc.chunks > 2 * EMBED_BATCH
        stored = library.store.all_ids("default")
        assert stored <= set(ids) and EMBED_BATCH <= len(stored) < len(ids)
        assert EMBED_BATCH <= doc.vectors <= len(stored) and 0 < doc.embedded < 1
        hits = library.search("Super Bowl 50", k=3, mode="keyword")
        assert hits and hits[0].path == str(long) and hits[0].bm25 is not None

        # the next start, as the app does it: check the store, recover, resume
        report = ensure_store(Paths(home), Settings(), embedder=counting, timeout_s=120, library=library)
        assert report.requeued == [str(long)]
        assert library.documents()[0].status == "embedding" and library.catalog.chunk_ids(doc.id) == ids
        kept = library.store.all_ids("default")
        assert kept <= set(ids)
        seen = []
        summary = library.resume(progress=seen.append)
        assert summary.indexed == [str(long)]
        assert not [p for p in seen if p.stage == "parse"], "parsed again"
        assert counting.passages == len(ids) - len(kept)  # only the missing vectors
        doc = library.documents()[0]
        assert (doc.status, doc.vectors) == ("indexed", doc.chunks)
        assert library.catalog.chunk_ids(doc.id) == ids
        assert library.store.all_ids("default") == set(ids)
        assert library.consistency_report() == CLEAN
        assert library.search("Super Bowl 50", k=3)[0].vector_rank is not None
    finally:
        library.close()
    METRICS["index"].update({"vector_phase_kills": 1, "lost": 0})


# ------------------------------------------------------------------ fail at every write
class Killed(BaseException):
    """Stands in for kill -9: it is not an Exception, so no handler in the core catches it."""


class FaultPlan:
    """Counts every write to Chroma and the catalog; the n-th one 'kills' before or after it."""

    def __init__(self, n: int, when: str):
        self.n, self.when, self.count = n, when, 0

    def tick(self) -> str | None:
        self.count += 1
        return self.when if self.count == self.n else None

    def install(self, monkeypatch, library: Library) -> None:
        store, catalog = library.store, library.catalog
        for name in ("upsert", "delete_ids", "delete_document", "drop_collection"):
            real = getattr(store, name)

            def wrapped(*args, _real=real, **kwargs):
                hit = self.tick()
                if hit == "before":
                    raise Killed
                result = _real(*args, **kwargs)
                if hit == "after":
                    raise Killed
                return result

            monkeypatch.setattr(store, name, wrapped)
        real_tx = catalog.transaction

        @contextlib.contextmanager
        def transaction():
            hit = self.tick()
            if hit == "before":
                raise Killed
            with real_tx() as db:
                yield db
            if hit == "after":
                raise Killed

        monkeypatch.setattr(catalog, "transaction", transaction)


def apply_changes(library: Library, docs: Path) -> None:
    """The write sequence under test: index the changed folder, remove a file, drop a collection."""
    library.index([docs])
    library.remove(docs / "d.pdf")  # still on disk: the folder sync brings it back
    library.delete_collection("other")


def _writes_in_run(base: Base, embedder, workdir: Path, monkeypatch) -> int:
    home, docs = base.copy(workdir, real_pdfs=False)
    library = Library(Paths(home), Settings(), embedder=embedder)
    plan = FaultPlan(0, "never")
    with monkeypatch.context() as m:
        plan.install(m, library)
        apply_changes(library, docs)
    library.close()
    shutil.rmtree(home)
    return plan.count


@pytest.fixture(scope="module")
def base_small(tmp_path_factory, embedder):
    return Base(tmp_path_factory.mktemp("kill-base-small"), embedder, 400, flush_heavy=False)


def _fault_sweep(base: Base, embedder, tmp_path, monkeypatch, step: int) -> None:
    total = _writes_in_run(base, embedder, tmp_path / "count", monkeypatch)
    assert total > 20
    tried = 0
    for n in range(1, total + 1, step):
        for when in ("before", "after"):
            workdir = tmp_path / f"n{n}-{when}"
            home, docs = base.copy(workdir, real_pdfs=False)
            library = Library(Paths(home), Settings(), embedder=embedder)
            with monkeypatch.context() as m:
                FaultPlan(n, when).install(m, library)
                with pytest.raises(Killed):
                    apply_changes(library, docs)
            library.close()
            # next start
            library = Library(Paths(home), Settings(), embedder=embedder)
            try:
                library.recover()
                next_start(library, docs, base, set())
            except AssertionError as exc:
                raise AssertionError(f"crash {when} write {n} of {total}: {exc}") from exc
            finally:
                library.close()
            shutil.rmtree(workdir, ignore_errors=True)
            tried += 1
    METRICS["index"].update({"simulated_crashes": tried, "lost": 0})


def test_crash_at_every_third_write_is_recovered(base_small, embedder, tmp_path, monkeypatch):
    _fault_sweep(base_small, embedder, tmp_path, monkeypatch, step=3)


@pytest.mark.nightly
def test_crash_at_every_write_is_recovered(base_small, embedder, tmp_path, monkeypatch):
    _fault_sweep(base_small, embedder, tmp_path, monkeypatch, step=1)


# ------------------------------------------------------------------ chat history and settings
def kill_chat_run(seed: int, home: Path) -> int:
    from desktop.chats import ChatStore

    rnd = random.Random(seed)
    child = Child("chat", str(home))
    try:
        assert child.wait_for(lambda line: line.startswith("acked"), 60), "".join(child.err)[-2000:]
        time.sleep(rnd.uniform(0.0, 0.8))
        killed = child.kill()
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    assert killed
    acked = {}
    for _, line in child.lines:
        if line.startswith("acked\t"):
            _, mid, n = line.split("\t")
            acked[int(mid)] = int(n)
    conv_id = int(next(line for _, line in child.lines if line.startswith("conversation")).split("\t")[1])
    store = ChatStore(Paths(home).chats)
    try:
        conversation = store.load(conv_id)
        stored = {m.id: m for m in conversation.messages}
        missing = set(acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged messages lost"
        for mid, n in acked.items():
            assert stored[mid].content == message_text(n) and stored[mid].meta == {"n": n}
        assert store.unreadable == 0
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()
    METRICS["chat"].update({"runs": 1, "kills": 1, "acknowledged": len(acked), "lost": 0})
    return len(acked)


@pytest.mark.parametrize("seed", range(CHAT_RUNS))
def test_kill9_during_chat_save(tmp_path, seed):
    kill_chat_run(seed, tmp_path / "home")


@pytest.mark.nightly
@pytest.mark.parametrize("seed", range(1000, 1000 + NIGHTLY_CHAT_RUNS))
def test_kill9_during_chat_save_nightly(tmp_path, seed):
    kill_chat_run(seed, tmp_path / "home")


def kill_settings_run(seed: int, home: Path) -> None:
    rnd = random.Random(seed)
    path = Paths(home).settings
    child = Child("settings", str(home))
    try:
        assert child.wait_for(lambda line: line.startswith("saved"), 60), "".join(child.err)[-2000:]
        time.sleep(rnd.uniform(0.0, 0.5))
        assert child.kill()
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    versions = [int(line.split("\t")[1]) for _, line in child.lines if line.startswith("saved\t")]
    raw = json.loads(path.read_text(encoding="utf-8"))  # never torn, never empty
    loaded = Settings.load(path)
    n = loaded.context_size - 2048
    assert n >= versions[-1], "an acknowledged save was lost"
    assert n <= versions[-1] + 1  # at most the save that was in flight
    assert raw["system_prompts"]["default"] == f"version {n} " + "x" * (n % 5000)
    assert loaded.temperature == n / 1000
    leftovers = [p for p in home.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # only the temp file of the save that was cut off
    METRICS["settings"].update({"runs": 1, "kills": 1, "saves_acknowledged": len(versions), "torn": 0})


@pytest.mark.parametrize("seed", range(CHAT_RUNS))
def test_kill9_during_settings_save(tmp_path, seed):
    kill_settings_run(seed, tmp_path / "home")


@pytest.mark.nightly
@pytest.mark.parametrize("seed", range(1000, 1000 + NIGHTLY_CHAT_RUNS))
def test_kill9_during_settings_save_nightly(tmp_path, seed):
    kill_settings_run(seed, tmp_path / "home")
