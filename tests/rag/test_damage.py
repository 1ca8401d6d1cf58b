"""A damaged or unreadable catalog, a read-only data folder and a full disk: plain messages,
a repair path from the last good copy, and permission problems never treated as damage."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from desktop.config import Paths, Settings


def sprig(home, *args):
    return subprocess.run([sys.executable, "-m", "desktop.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "SPRIG_HOME": str(home)}, timeout=600)


@pytest.fixture
def indexed_home(sprig_home, tmp_path, embedder):
    from desktop.rag.library import Library

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pump.txt").write_text("The relief valve of the pump opens at 8 bar.\n")
    (docs / "fan.txt").write_text("The fan bearing is greased every spring.\n")
    lib = Library(Paths(sprig_home), Settings(), embedder=embedder)
    assert len(lib.index([docs]).indexed) == 2
    lib.close()
    assert Paths(sprig_home).catalog_backup.exists()
    return sprig_home


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_catalog_gets_a_message_and_a_repair_from_the_last_good_copy(indexed_home, damage):
    catalog = Paths(indexed_home).catalog
    for side in ("-wal", "-shm"):
        catalog.with_name(catalog.name + side).unlink(missing_ok=True)
    data = catalog.read_bytes()
    catalog.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\0garbage" * 4096)
    broken = sprig(indexed_home, "docs")
    assert broken.returncode == 3  # a Sprig error (2 is a usage error)
    assert "Traceback" not in broken.stderr
    if damage == "overwritten":  # a half file may still open; a garbage one never does
        assert "catalog (catalog.sqlite3) is damaged" in broken.stderr and "check --repair" in broken.stderr
    repaired = sprig(indexed_home, "check", "--repair")
    assert "Traceback" not in repaired.stderr, repaired.stderr
    assert "restored from the last good copy, 2 document(s)" in repaired.stdout, repaired.stdout + repaired.stderr
    assert list(indexed_home.glob("catalog.sqlite3.damaged-*"))  # kept, not deleted
    hits = sprig(indexed_home, "search", "At what pressure does the relief valve open?", "--json")
    assert hits.returncode == 0 and "pump.txt" in hits.stdout


def test_permission_and_full_disk_errors_are_told_apart_from_damage(tmp_path):
    import errno
    import sqlite3

    from desktop.errors import CatalogDamaged, DataFolderUnwritable, DiskFull
    from desktop.rag.catalog import classify_error

    path = tmp_path / "catalog.sqlite3"
    assert isinstance(classify_error(path, sqlite3.OperationalError("attempt to write a readonly database")),
                      DataFolderUnwritable)
    assert isinstance(classify_error(path, PermissionError(errno.EACCES, "denied")), DataFolderUnwritable)
    assert isinstance(classify_error(path, sqlite3.OperationalError("database or disk is full")), DiskFull)
    assert isinstance(classify_error(path, OSError(errno.EFBIG, "File too large")), DiskFull)
    assert isinstance(classify_error(path, sqlite3.DatabaseError("file is not a database")), CatalogDamaged)


def test_a_read_only_store_is_never_moved_aside(indexed_home, monkeypatch):
    """As root the folder stays writable, so the check is driven through os.access."""
    from desktop.errors import DataFolderUnwritable
    from desktop.rag import health

    monkeypatch.setattr(health, "check_store", lambda *a, **k: health.StoreCheck(False, "cannot read", True))
    monkeypatch.setattr(health, "_writable", lambda folder: False)
    with pytest.raises(DataFolderUnwritable, match="permission denied"):
        health.ensure_store(Paths(indexed_home))
    assert (indexed_home / "chroma").exists() and not list(indexed_home.glob("chroma.damaged-*"))


def test_a_full_disk_stops_the_job_with_a_message_and_the_document_is_requeued(indexed_home, tmp_path,
                                                                              embedder, monkeypatch):
    import errno

    from desktop.errors import DiskFull
    from desktop.rag.library import Library

    lib = Library(Paths(indexed_home), Settings(), embedder=embedder)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "new.txt").write_text("The compressor oil is changed yearly.\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lib.store, "upsert", full)
    with pytest.raises(DiskFull, match="full"):
        lib.index([tmp_path / "more"])
    monkeypatch.undo()
    assert str(tmp_path / "more" / "new.txt") in lib.recover()
    assert lib.index([tmp_path / "more"]).indexed == [str(tmp_path / "more" / "new.txt")]
    lib.close()
