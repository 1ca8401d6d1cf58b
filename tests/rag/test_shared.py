"""A shared library on a real Chroma server (``chroma run`` on the loopback interface): two
Sprigs with their own data folders index, find and cite each other's documents; the same
file indexed by both at once is one document; a server killed mid-batch loses nothing; a
library moves to the server and back without re-embedding."""

from __future__ import annotations

import shutil
import threading

import pytest

from desktop.config import Paths, Settings
from desktop.errors import StoreUnavailable
from desktop.rag.library import Library
from tests.conftest import eval_path
from tests.helpers.chroma_server import ChromaServer
from tests.helpers.embedders import CountingEmbedder

PEPSICO = ("financebench", "pdfs", "PEPSICO_2023_8K_dated-2023-05-05.pdf")
AMCOR = ("financebench", "pdfs", "AMCOR_2022_8K_dated-2022-07-01.pdf")
MANUAL = ("Pump manual.\n\nThe spare impeller is stored in locker 12 of the east workshop. "
          "The pump must be serviced every 500 hours.\n\nThe cabinet is painted green.\n")


@pytest.fixture
def server(tmp_path):
    chroma = ChromaServer(tmp_path / "chroma")
    chroma.folder.mkdir()
    chroma.start()
    yield chroma
    chroma.kill()


def pc(tmp_path, name: str, url: str, embedder) -> Library:
    """A Sprig on another PC: its own data folder, the shared server, its own name."""
    home = tmp_path / name
    return Library(Paths(home / "data"), Settings(chroma_url=url, library_name=name), embedder=embedder)


def files_of(tmp_path, name: str) -> object:
    folder = tmp_path / f"{name}-files"
    folder.mkdir(exist_ok=True)
    return folder


def test_two_pcs_find_and_cite_each_others_documents_and_one_file_is_one_document(
        server, tmp_path, embedder, qwen_model, monkeypatch):
    from desktop.rag import shared
    from desktop.rag.answer import AnswerEngine

    monkeypatch.setattr(shared, "REFRESH_EVERY_S", 0.0)  # every search looks (default: every 2 s)

    alice, bob = pc(tmp_path, "alice", server.url, embedder), pc(tmp_path, "bob", server.url, embedder)
    manual = files_of(tmp_path, "alice") / "pump-manual.txt"
    manual.write_text(MANUAL, encoding="utf-8")
    pepsico = files_of(tmp_path, "bob") / "pepsico-8k.pdf"
    shutil.copy(eval_path(*PEPSICO), pepsico)
    # the same PDF, under different names on the two PCs, indexed by both at the same time
    same = [shutil.copy(eval_path(*AMCOR), files_of(tmp_path, who) / f"amcor-{who}.pdf") for who in ("alice", "bob")]
    outcomes: dict[str, object] = {}

    def index(lib, paths, who):
        try:
            outcomes[who] = lib.index(paths)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            outcomes[who] = exc

    threads = [threading.Thread(target=index, args=(alice, [manual, same[0]], "alice")),
               threading.Thread(target=index, args=(bob, [pepsico, same[1]], "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(not isinstance(o, Exception) and not o.failed for o in outcomes.values()), outcomes

    # one record per distinct content on the server, and exactly that content's chunks
    records = alice.store.records("default")
    assert len(records) == 3, records
    assert {r["status"] for r in records.values()} == {"indexed"}
    assert sum(int(r["chunks"]) for r in records.values()) == alice.store.count("default")

    # each PC finds the other's document, named and signed
    hit = bob.search("Where is the spare impeller stored?", k=3)[0]
    assert "locker 12" in hit.text and hit.path == "shared://alice/" + str(manual).lstrip("/")
    bobs = {d.path: d for d in bob.documents()}
    assert bobs[hit.path].added_by == "alice" and bobs[hit.path].remote
    hit = alice.search("PepsiCo 8-K filing", k=5)
    assert any(p.path.endswith("pepsico-8k.pdf") and p.page is not None for p in hit), [p.path for p in hit]
    # each PC keeps its own copy of the shared PDF under its own name; nothing twice
    for lib, mine in ((alice, same[0]), (bob, same[1])):
        docs = lib.documents()
        assert [d.path for d in docs if d.path.endswith(".pdf") and "amcor" in d.path] == [str(mine)]
        assert len(docs) == 3
        assert lib.consistency_report() == {"missing_vectors": 0, "orphan_vectors": 0, "in_flight": 0,
                                            "catalog_ok": True}

    # and cites it: Bob's question answered from Alice's manual, the citation leading to it
    stream = AnswerEngine(bob, qwen_model).ask("Where is the spare impeller stored?")
    list(stream)
    answer = stream.result
    assert "12" in answer.text and not answer.abstained, answer.text
    assert answer.citations and answer.citations[0].passage.path == hit_path_of(bob, "pump-manual.txt")

    # removed on one PC, gone from the other at its next look
    alice.remove(manual)
    bob.refresh("default", force=True)
    assert not [d for d in bob.documents() if d.path.endswith("pump-manual.txt")]
    assert "locker 12" not in " ".join(p.text for p in bob.search("spare impeller locker", k=5))
    alice.close()
    bob.close()


def hit_path_of(lib: Library, name: str) -> str:
    return next(d.path for d in lib.documents() if d.path.endswith(name))


def test_a_server_killed_mid_batch_loses_nothing_and_indexing_resumes(server, tmp_path, embedder):
    alice = pc(tmp_path, "alice", server.url, embedder)
    folder = files_of(tmp_path, "alice")
    paths = []
    for i in range(3):
        path = folder / f"note-{i}.txt"
        path.write_text(f"Note {i}.\n\nThe code word of note {i} is {['amber', 'birch', 'cedar'][i]}.\n", "utf-8")
        paths.append(path)

    def kill_after_the_first(p):
        if p.stage == "done" and p.file_index == 1:
            server.kill()

    with pytest.raises(StoreUnavailable) as caught:
        alice.index(paths, progress=kill_after_the_first)
    assert server.url in str(caught.value)
    status = {d.path: d.status for d in alice.documents()}
    assert status == {str(paths[0]): "indexed", str(paths[1]): "queued", str(paths[2]): "queued"}, status

    # with the server gone, search still answers from this PC's copy, by keyword, and says so
    found = alice.search("code word amber", k=3)
    assert found and "amber" in found[0].text
    assert server.url in alice.search_note and "Keyword search only" in alice.search_note

    server.start()
    alice.recover()
    summary = alice.resume()
    assert sorted(summary.indexed) == [str(paths[1]), str(paths[2])], summary
    assert {d.status for d in alice.documents()} == {"indexed"}
    assert alice.consistency_report()["missing_vectors"] == 0
    assert alice.consistency_report()["orphan_vectors"] == 0
    bob = pc(tmp_path, "bob", server.url, embedder)
    assert "cedar" in bob.search("What is the code word of note 2?", k=1)[0].text
    alice.close()
    bob.close()


def test_a_write_cut_short_on_this_pc_is_cleared_at_the_next_start(server, tmp_path, embedder):
    alice = pc(tmp_path, "alice", server.url, embedder)
    note = files_of(tmp_path, "alice") / "note.txt"
    note.write_text("Minutes.\n\nThe budget was approved on Tuesday.\n", "utf-8")
    assert not alice.index([note]).failed
    key = alice.documents()[0].content_hash
    record = alice.store.record("default", key)
    # as if Alice's Sprig had been killed between the first and the last write of a document
    alice.catalog.delete_document(alice.documents()[0].id)
    alice.store.put_record("default", key, {**record, "status": "indexing"})
    alice.recover()
    assert alice.store.record("default", key) is None
    assert alice.store.count("default") == 0
    alice.close()


def test_a_library_moves_to_the_server_and_back_without_re_embedding(server, tmp_path, embedder):
    from desktop.rag.shared import copy_to_local, copy_to_server

    counting = CountingEmbedder(embedder)
    home = tmp_path / "solo"
    local = Library(Paths(home), Settings(library_name="solo"), embedder=counting)
    pepsico = files_of(tmp_path, "solo") / "pepsico.pdf"
    shutil.copy(eval_path(*PEPSICO), pepsico)
    manual = files_of(tmp_path, "solo") / "manual.txt"
    manual.write_text(MANUAL, encoding="utf-8")
    assert not local.index([pepsico, manual]).failed
    before = [(p.path, p.page, p.text) for p in local.search("spare impeller locker", k=3)]
    chunks = local.catalog.count_chunks()
    embedded = counting.passages

    moved = copy_to_server(local, server.url, progress=lambda *a: None)
    assert moved == {"documents": 2, "duplicates_dropped": 0}
    local.close()
    shared = Library(Paths(home), Settings(chroma_url=server.url, library_name="solo"), embedder=counting)
    assert [(p.path, p.page, p.text) for p in shared.search("spare impeller locker", k=3)] == before
    assert shared.store.count("default") == chunks
    assert shared.consistency_report()["missing_vectors"] == 0
    assert {d.added_by for d in shared.documents()} == {"solo"}
    colleague = pc(tmp_path, "colleague", server.url, embedder)
    assert "locker 12" in colleague.search("Where is the spare impeller stored?", k=1)[0].text
    colleague.close()

    assert copy_to_local(shared) == {"documents": 2}
    shared.close()
    back = Library(Paths(home), Settings(), embedder=counting)
    assert [(p.path, p.page, p.text) for p in back.search("spare impeller locker", k=3)] == before
    assert back.consistency_report() == {"missing_vectors": 0, "orphan_vectors": 0, "in_flight": 0,
                                         "catalog_ok": True}
    assert counting.passages == embedded  # not one passage embedded again
    back.close()


def test_sprig_library_moves_to_a_server_and_says_so(server, tmp_path, sprig_home, embedder, capsys):
    from desktop.cli import main

    lib = Library(Paths(sprig_home), Settings(), embedder=embedder)
    manual = files_of(tmp_path, "cli") / "manual.txt"
    manual.write_text(MANUAL, encoding="utf-8")
    assert not lib.index([manual]).failed
    lib.close()
    assert main(["library", "--to-server", server.url]) == 0
    out = capsys.readouterr().out
    assert f"moved 1 document(s) to {server.url} without re-embedding" in out
    assert Settings.load(Paths(sprig_home).settings).chroma_url == server.url
    assert main(["library", "--json"]) == 0
    assert '"shared": true' in capsys.readouterr().out
    assert main(["check"]) == 0  # the server holds every chunk the catalog knows, and no more
    assert '"missing_vectors": 0' in capsys.readouterr().out


def test_nothing_listening_is_a_clear_error_and_nothing_is_moved(tmp_path, sprig_home, embedder, capsys):
    from desktop.cli import main
    from tests.helpers.chroma_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["library", "--to-server", url]) != 0
    assert url in capsys.readouterr().err
    assert Settings.load(Paths(sprig_home).settings).chroma_url == ""


def test_a_library_switched_to_a_server_in_settings_writes_its_documents_there(server, tmp_path, embedder):
    home = tmp_path / "switcher"
    local = Library(Paths(home), Settings(), embedder=embedder)
    manual = files_of(tmp_path, "switcher") / "manual.txt"
    manual.write_text(MANUAL, encoding="utf-8")
    assert not local.index([manual]).failed
    local.close()
    # the setting changed by hand, no `sprig library --to-server`: nothing is dropped, the
    # document stays searchable here and is written to the server by the next job
    lib = Library(Paths(home), Settings(chroma_url=server.url, library_name="switcher"), embedder=embedder)
    lib.refresh(force=True)
    assert [d.status for d in lib.documents()] == ["indexed"]
    assert lib.store.records("default") == {}
    assert "locker 12" in lib.search("spare impeller locker", k=1, mode="keyword")[0].text
    assert lib.resume().indexed == [str(manual)]
    assert lib.store.record("default", lib.documents()[0].content_hash)["added_by"] == "switcher"
    assert lib.consistency_report()["missing_vectors"] == 0
    assert "locker 12" in lib.search("Where is the spare impeller stored?", k=1)[0].text
    lib.close()


def test_a_changed_file_keeps_its_older_version_searchable_while_the_server_is_away(server, tmp_path, embedder):
    alice = pc(tmp_path, "alice", server.url, embedder)
    note = files_of(tmp_path, "alice") / "minutes.txt"
    note.write_text("Minutes.\n\nThe budget was approved on Tuesday.\n", "utf-8")
    assert not alice.index([note]).failed
    note.write_text("Minutes, revised.\n\nThe budget was approved on Thursday.\n", "utf-8")

    def kill_when_writing(p):
        if p.stage == "store":
            server.kill()

    with pytest.raises(StoreUnavailable):
        alice.index([note], progress=kill_when_writing)
    assert [d.status for d in alice.documents()] == ["indexed"]
    assert "Tuesday" in alice.search("budget approved", k=1)[0].text  # the older version, by keyword

    server.start()
    alice.recover()
    assert alice.resume().indexed == [str(note)]
    assert "Thursday" in alice.search("When was the budget approved?", k=1)[0].text
    assert len(alice.store.records("default")) == 1  # the older version left the server
    assert alice.consistency_report()["missing_vectors"] == alice.consistency_report()["orphan_vectors"] == 0
    alice.close()
