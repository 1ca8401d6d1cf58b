"""The window's indexing queue: the first start prepares the embedder before any drop; with a
shared library whose server goes away, the files dropped wait in the queue, the user is told,
and indexing resumes by itself once the server is back."""

from __future__ import annotations

from desktop.config import Paths, Settings
from desktop.rag.library import Library
from desktop.ui.indexing import IndexingController
from tests.helpers.chroma_server import ChromaServer


def test_files_dropped_while_the_server_is_down_are_indexed_when_it_is_back(qtbot, tmp_path, embedder):
    server = ChromaServer(tmp_path / "chroma")
    server.folder.mkdir()
    server.start()
    lib = Library(Paths(tmp_path / "home"), Settings(chroma_url=server.url, library_name="ui"), embedder=embedder)
    notes = []
    for i, word in enumerate(("amber", "birch")):
        notes.append(tmp_path / f"note-{i}.txt")
        notes[-1].write_text(f"Note {i}.\n\nThe code word is {word}.\n", "utf-8")
    controller = IndexingController(lib)
    controller.retry.setInterval(3000)
    try:
        server.kill()
        with qtbot.waitSignal(controller.job_failed, timeout=60_000) as failed:
            controller.add(notes, "default")
        message = failed.args[1]
        assert server.url in message and "Nothing is lost" in message, message
        assert controller.retry.isActive()
        assert {d.path: d.status for d in lib.documents()} == {str(n): "queued" for n in notes}

        server.start()
        with qtbot.waitSignal(controller.job_finished, timeout=120_000) as finished:
            pass  # the retry timer starts the job
        request, summary = finished.args
        assert request.kind == "startup"
        assert sorted(summary.indexed) == sorted(str(n) for n in notes)
        assert {d.status for d in lib.documents()} == {"indexed"}
        assert not controller.retry.isActive()
    finally:
        controller.shutdown()
        lib.close()
        server.kill()


def test_the_first_start_prepares_the_embedder_before_any_drop(qtbot, sprig_home, embedder):
    from desktop.rag.library import PREPARE_MESSAGE
    from desktop.rag.types import CancelToken
    from desktop.ui.indexing import Request, run_request
    from tests.helpers.embedders import Unbuilt

    unbuilt = Unbuilt(embedder)
    lib = Library(Paths(sprig_home), Settings(), embedder=unbuilt)
    seen = []
    try:
        run_request(lib, Request("startup", None), CancelToken(), seen.append)
    finally:
        lib.close()
    assert [p.message for p in seen if p.stage == "prepare"] == [PREPARE_MESSAGE]
    assert unbuilt.loads == 1 and not unbuilt.needs_build
