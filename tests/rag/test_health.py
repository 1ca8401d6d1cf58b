"""Start-up health check: a damaged Chroma folder is found in a subprocess, moved aside and
rebuilt from the catalog, with progress; an intact one is left alone (RELIABILITY.md F1, §6.2).

The store is built once with the real embedder in a flush-heavy configuration (HNSW files
written every 10 vectors, the F1b variant), then each test damages its own copy.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from desktop.config import Paths, Settings
from desktop.rag.health import check_store, ensure_store, move_aside
from desktop.rag.library import REBUILD_PENDING, Library
from desktop.rag.vectorstore import VectorStore, chroma_name
from tests.conftest import eval_path
from tests.helpers import hostile

CLEAN = {"missing_vectors": 0, "orphan_vectors": 0, "in_flight": 0, "catalog_ok": True}


def flush_heavy_collection(chroma_dir: Path, embedding_model: str, name: str = "default") -> None:
    """Create the collection with sync_threshold=10 so its HNSW files are on disk."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(chroma_dir), settings=ChromaSettings(anonymized_telemetry=False))
    client.create_collection(
        chroma_name(name), embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "sync_threshold": 10, "batch_size": 10}},
        metadata={"sprig_collection": name, "embedding_model": embedding_model},
    )
    client.close()


@pytest.fixture(scope="module")
def built_store(tmp_path_factory, embedder):
    """(data folder, docs folder, chunk ids) of a real, closed store."""
    home = tmp_path_factory.mktemp("health-home")
    docs = tmp_path_factory.mktemp("health-docs")
    (docs / "bolts.txt").write_text(hostile.GOOD_SENTENCE + "\n\nCheck the wheel nuts after 50 km.\n")
    (docs / "manual.pdf").write_bytes(hostile.good_pdf_bytes(2))
    article = eval_path("squad_v1.1_dev", "derived", "articles", "002_Normans.txt").read_text()
    (docs / "normans.txt").write_text(article[:5000])  # enough for several HNSW flushes, quick to embed
    paths = Paths(home)
    flush_heavy_collection(paths.chroma, embedder.model_id)
    library = Library(paths, Settings(), embedder=embedder)
    summary = library.index([docs])
    assert not summary.failed and len(summary.indexed) == 3
    ids = library.catalog.all_chunk_ids()
    assert library.consistency_report() == CLEAN
    library.close()
    segment = _segment(home)
    assert (segment / "data_level0.bin").stat().st_size > 0, "HNSW files were not flushed"
    return home, docs, ids


def _segment(home: Path) -> Path:
    return next(p for p in (home / "chroma").iterdir() if p.is_dir())


def _garble(path: Path, at: float, length: int, seed: int = 0) -> None:
    rnd = random.Random(seed)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(int(size * at))
        handle.write(bytes(rnd.randrange(256) for _ in range(min(length, size))))


DAMAGE = {
    "sqlite-header-garbled": lambda h: _garble(h / "chroma" / "chroma.sqlite3", 0.0, 100),
    "sqlite-truncated": lambda h: os.truncate(h / "chroma" / "chroma.sqlite3",
                                              (h / "chroma" / "chroma.sqlite3").stat().st_size // 3),
    "sqlite-pages-garbled": lambda h: _garble(h / "chroma" / "chroma.sqlite3", 0.3, 200_000),
    "hnsw-data-truncated": lambda h: os.truncate(_segment(h) / "data_level0.bin", 1000),
    "hnsw-header-garbled": lambda h: _garble(_segment(h) / "header.bin", 0.0, 100),
    "hnsw-length-garbled": lambda h: _garble(_segment(h) / "length.bin", 0.0, 4096),
    "hnsw-pickle-garbled": lambda h: _garble(_segment(h) / "index_metadata.pickle", 0.0, 5000),
    "hnsw-segment-deleted": lambda h: shutil.rmtree(_segment(h)),
}


def _copy(built_store, tmp_path) -> tuple[Path, Path, set[str]]:
    home, docs, ids = built_store
    target = tmp_path / "home"
    shutil.copytree(home, target)
    return target, docs, ids


def _assert_healthy(home: Path, embedder, ids: set[str]) -> None:
    assert check_store(Paths(home)).ok
    library = Library(Paths(home), Settings(), embedder=embedder)
    try:
        assert library.consistency_report() == CLEAN
        assert library.catalog.all_chunk_ids() == ids
        assert library.store.all_ids("default") == ids
        hits = library.search("Normans Normandy Rollo", k=3)
        assert hits and Path(hits[0].path).name == "normans.txt"
        hits = library.search("torque for the M8 flange bolts", k=3)
        assert {"bolts.txt", "manual.pdf"} & {Path(p.path).name for p in hits}
    finally:
        library.close()


def test_intact_store_is_left_alone(built_store, tmp_path, embedder):
    home, _, ids = _copy(built_store, tmp_path)
    report = ensure_store(Paths(home), Settings(), embedder=embedder)
    assert report.status == "ok" and report.moved_to is None and report.rebuilt_chunks == 0
    assert report.message == "" and report.requeued == []
    assert not any(p.name.startswith("chroma.damaged") for p in home.iterdir())
    _assert_healthy(home, embedder, ids)


NIGHTLY_ONLY = {"sqlite-pages-garbled", "hnsw-header-garbled", "hnsw-pickle-garbled", "hnsw-segment-deleted"}


@pytest.mark.parametrize(
    "damage", [pytest.param(d, marks=pytest.mark.nightly) if d in NIGHTLY_ONLY else d for d in DAMAGE]
)
def test_damaged_store_is_moved_aside_and_rebuilt(built_store, tmp_path, embedder, damage):
    home, _, ids = _copy(built_store, tmp_path)
    DAMAGE[damage](home)
    check = check_store(Paths(home))
    assert not check.ok and check.damaged, check
    events = []
    report = ensure_store(Paths(home), Settings(), progress=events.append, embedder=embedder)
    assert report.status == "rebuilt", report
    assert report.reason and "Traceback" not in report.reason
    assert report.moved_to is not None and report.moved_to.name.startswith("chroma.damaged-")
    assert (report.moved_to / "chroma.sqlite3").exists()  # kept for inspection, not deleted
    assert report.rebuilt_chunks == len(ids)
    assert "rebuilt" in report.message
    # a visible progress bar: a check step, then rebuild steps counting up to every chunk
    assert events[0].stage == "check"
    rebuild = [e for e in events if e.stage == "rebuild"]
    assert rebuild and rebuild[-1].chunks_done == rebuild[-1].chunks == len(ids)
    assert [e.chunks_done for e in rebuild] == sorted(e.chunks_done for e in rebuild)
    assert rebuild[-1].fraction == 1.0
    _assert_healthy(home, embedder, ids)


def test_missing_store_is_rebuilt_in_place(built_store, tmp_path, embedder):
    home, _, ids = _copy(built_store, tmp_path)
    shutil.rmtree(home / "chroma")
    report = ensure_store(Paths(home), Settings(), embedder=embedder)
    assert report.status == "rebuilt" and report.moved_to is None
    assert "missing" in report.reason
    _assert_healthy(home, embedder, ids)


def test_hanging_store_check_is_cut_off(built_store, tmp_path):
    """A checker that blocks (here on a lock, as with a second writer) is killed at the timeout."""
    home, _, _ = _copy(built_store, tmp_path)
    db = sqlite3.connect(home / "chroma" / "chroma.sqlite3", isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        check = check_store(Paths(home), timeout_s=5)
        assert time.monotonic() - started < 15
        assert not check.ok and check.damaged and "took longer than 5 s" in check.reason
    finally:
        db.close()


class Killed(BaseException):
    """Stands in for kill -9: nothing after it runs (not even `except Exception`)."""


def test_interrupted_rebuild_is_finished_on_next_start(built_store, tmp_path, embedder, monkeypatch):
    home, _, ids = _copy(built_store, tmp_path)
    library = Library(Paths(home), Settings(), embedder=embedder)
    real_upsert = library.store.upsert

    def upsert_then_die(*args, **kwargs):
        real_upsert(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(library.store, "upsert", upsert_then_die)
    with pytest.raises(Killed):
        library.rebuild_vectors()
    library.close()
    reopened = Library(Paths(home), Settings(), embedder=embedder)
    assert reopened.needs_rebuild and reopened.catalog.get_meta(REBUILD_PENDING) == "1"
    assert reopened.consistency_report()["missing_vectors"] > 0
    reopened.close()
    report = ensure_store(Paths(home), Settings(), embedder=embedder)
    assert report.status == "rebuilt" and report.moved_to is None and report.rebuilt_chunks == len(ids)
    _assert_healthy(home, embedder, ids)


def test_closed_store_releases_its_folder(library, tmp_path):
    """After Library.close() the folder can be moved aside and a fresh store opened in its place."""
    (tmp_path / "a.txt").write_text("Apples grow in orchards on the hills above the river.\n")
    library.index([tmp_path / "a.txt"])
    assert library.store.count("default") > 0
    library.close()
    moved = move_aside(library.paths.chroma)
    assert moved is not None and not library.paths.chroma.exists()
    fresh = VectorStore(library.paths.chroma)
    try:
        assert fresh.count("default") == 0
    finally:
        fresh.close()


def test_cli_check_and_repair(built_store, tmp_path):
    """`sprig check` reports a damaged store without a traceback; `--repair` rebuilds it."""
    import subprocess

    home, _, ids = _copy(built_store, tmp_path)
    DAMAGE["sqlite-header-garbled"](home)
    sprig = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sprig"
    env = {**os.environ, "SPRIG_HOME": str(home)}

    def run(*args):
        return subprocess.run([str(sprig), *args], capture_output=True, text=True, env=env, timeout=300)

    check = run("check")
    assert check.returncode == 1 and "the vector store is damaged" in check.stderr
    assert "sprig check --repair" in check.stderr and "Traceback" not in check.stderr
    search = run("search", "Normans")
    assert search.returncode == 3 and "Traceback" not in search.stderr and "--repair" in search.stderr
    repair = run("check", "--repair")
    assert repair.returncode == 0, repair.stderr[-2000:]
    assert f"rebuilt {len(ids)} vectors" in repair.stdout
    assert run("check").returncode == 0
