"""Linked folders are watched: files added, changed or deleted on disk are indexed again."""

from __future__ import annotations

from tests.ui.conftest import rows_by_name, wait_idle

TEXT = {
    "bolts.txt": "The M8 bolts on the gearbox cover are tightened to 25 newton metres.\n",
    "paint.txt": "The frame is painted with two coats of green enamel after sanding.\n",
}


def test_files_added_changed_or_deleted_in_a_linked_folder_are_reindexed(qtbot, make_window, library, tmp_path):
    folder = tmp_path / "manuals"
    folder.mkdir()
    for name, text in TEXT.items():
        (folder / name).write_text(text * 5)
    window = make_window(library=library, startup_jobs=False)
    window.add_paths([folder])
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: {r.name: r.status for r in window.documents.model.rows}
                    == {"bolts.txt": "indexed", "paint.txt": "indexed"}, timeout=10_000)
    qtbot.waitUntil(lambda: str(folder) in window.watcher.watched, timeout=10_000)

    # added
    (folder / "oil.txt").write_text("Change the gearbox oil every 500 hours of use.\n" * 5)
    qtbot.waitUntil(lambda: rows_by_name(window).get("oil.txt") is not None
                    and rows_by_name(window)["oil.txt"].status == "indexed", timeout=30_000)
    # changed in place
    before = library.catalog.document("default", str(folder / "bolts.txt")).content_hash
    with open(folder / "bolts.txt", "a") as handle:
        handle.write("From 2024 on, use 28 newton metres for the M8 bolts.\n")
    qtbot.waitUntil(lambda: library.catalog.document("default", str(folder / "bolts.txt")).content_hash != before,
                    timeout=30_000)
    wait_idle(qtbot, window)
    hits = library.search("newton metres for the M8 bolts from 2024", k=3)
    assert any("28 newton metres" in p.text for p in hits)
    # deleted
    (folder / "paint.txt").unlink()
    qtbot.waitUntil(lambda: "paint.txt" not in rows_by_name(window), timeout=30_000)
    assert [d.path for d in library.documents("default") if d.path.endswith("paint.txt")] == []
