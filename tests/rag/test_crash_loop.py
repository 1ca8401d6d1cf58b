"""A document that crashes Sprig natively while it is embedded is not retried at every start."""

from __future__ import annotations

import os
import subprocess
import sys

from desktop.config import Paths, Settings
from tests.conftest import REPO
from tests.test_privacy import _seed_models

# a start-up as the window does it (recover, then resume), with an embedder that segfaults on
# one document's text: ctypes reads address 0
CHILD = r"""
import ctypes, sys
from desktop.config import Paths, Settings, record_native_crashes
from desktop.rag.embeddings import Embedder
from desktop.rag.library import Library


def main():

    paths = Paths.default()
    record_native_crashes(paths)
    emb = Embedder()
    real = emb.embed
    def embed(texts):
        if any("POISON" in t for t in texts):
            ctypes.string_at(0)
        return real(texts)
    emb.embed = embed
    lib = Library(paths, Settings(), embedder=emb)
    lib.recover()
    summary = lib.index([sys.argv[1]])
    print("INDEXED", len(summary.indexed), "FAILED", sorted(summary.failed.values()))
    lib.close()


if __name__ == "__main__":  # the parser worker is a spawned child that imports this file
    main()
"""


def test_a_native_crash_twice_on_one_document_marks_it_failed(sprig_home, tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-good.txt").write_text("The fan bearing is greased every spring.\n")
    (docs / "b-poison.txt").write_text("POISON text that crashes the embedder.\n")
    _seed_models(embedder, sprig_home)
    env = {**os.environ, "SPRIG_HOME": str(sprig_home), "PYTHONPATH": str(REPO)}
    codes = []
    out = ""
    script = tmp_path / "startup.py"
    script.write_text(CHILD)
    for _ in range(3):
        run = subprocess.run([sys.executable, str(script), str(docs)], env=env, capture_output=True,
                             text=True, timeout=300)
        codes.append(run.returncode)
        out = run.stdout
    assert codes[0] < 0 and codes[1] < 0, codes  # crashed twice (SIGSEGV)...
    assert codes[2] == 0, out  # ...then the start-up goes on without it
    assert "crashed 2 times while indexing this file" in out
    assert "Fatal Python error" in (sprig_home / "crash.log").read_text()
    from desktop.rag.library import Library

    lib = Library(Paths(sprig_home), Settings(), embedder=embedder)
    status = {os.path.basename(d.path): d.status for d in lib.documents()}
    lib.close()
    assert status == {"a-good.txt": "indexed", "b-poison.txt": "failed"}


def test_a_kill_leaves_no_crash_count(library, tmp_path):
    """Without a crash log entry since the document started, nothing is counted (kill -9, power cut)."""
    import json

    doc = tmp_path / "n.txt"
    doc.write_text("Notes.\n")
    library.index([doc])
    d = library.documents()[0]
    library.paths.crash_log.write_text("an old crash, before this document started\n")
    size = library.paths.crash_log.stat().st_size
    library.catalog.set_meta("indexing_in_flight", json.dumps({"doc_id": d.id, "crash_log_size": size,
                                                               "content_hash": d.content_hash}))
    library.recover()
    assert library.documents()[0].crashes == 0 and library.documents()[0].status == "indexed"
