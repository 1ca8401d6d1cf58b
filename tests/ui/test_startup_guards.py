"""Start-up safety: no crash loop after a crash while loading the model; a damaged store is rebuilt."""

from __future__ import annotations

import json

from desktop.config import Paths, Settings
from desktop.ui.window import MainWindow


def test_model_is_not_auto_loaded_after_a_crash_while_loading(qtbot, sprig_home, library):
    paths = Paths(sprig_home)
    # what a process that died inside model_load_guard leaves behind
    paths.crash_marker.write_text(json.dumps({"model": "/models/broken.gguf", "started": 1.0, "pid": 999999}))
    calls = []
    window = MainWindow(paths, Settings(), library=library, startup_jobs=False, watch=False,
                        engine_loader=lambda *a, **k: calls.append(a))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.engine.state == "unloaded" and "unexpectedly" in window.engine.message)
    qtbot.wait(300)
    assert calls == [] and not window.engine.loading
    assert "broken.gguf" in window.model_status.text()
    window.close()


def test_damaged_vector_store_is_rebuilt_at_start(qtbot, sprig_home, embedder, tmp_path):
    from desktop.rag.library import Library

    paths = Paths(sprig_home)
    note = tmp_path / "note.txt"
    note.write_text("The lighthouse keeper logs the weather at six every morning.", encoding="utf-8")
    lib = Library(paths, Settings(), embedder=embedder)
    lib.index([note])
    lib.close()
    # garble every file of the Chroma store
    for f in paths.chroma.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 64)
    lib = Library(paths, Settings(), embedder=embedder)
    window = MainWindow(paths, Settings(), library=lib, auto_load=False, watch=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: any(p.name.startswith("chroma.damaged") for p in sprig_home.iterdir()), timeout=120_000)
    qtbot.waitUntil(lambda: not window.indexing.busy, timeout=120_000)  # the start-up job is done
    report = lib.consistency_report()
    assert report["missing_vectors"] == report["orphan_vectors"] == 0
    assert lib.store.count("default") > 0
    assert lib.search("When does the lighthouse keeper log the weather?", k=1)[0].path == str(note)
    window.close()
    lib.close()
