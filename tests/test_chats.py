"""What an answer message keeps (AnswerRecord): the same JSON in the chat store as before,
read back the same after a restart, and rows saved by older versions still load."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

from desktop.chats import AnswerRecord, ChatStore, Message
from desktop.rag.grounding import Citation, Claim
from desktop.rag.types import Passage, Source

ANSWER_KEYS = ["mode", "abstained", "stopped", "collection", "model", "citations", "claims", "confidence",
               "nearest", "timings"]
SOURCE_KEYS = ["n", "path", "page", "char_start", "char_end", "text", "heading", "score", "similarity", "bm25",
               "matched"]


def passage(**kw) -> Passage:
    base = dict(chunk_id="c1", doc_id=1, path="/docs/pump manual.pdf", page=2, char_start=12, char_end=70,
                text="The spare impeller is stored in locker 12.", score=0.031, similarity=0.64, bm25=4.1,
                context="Storage")
    return Passage(**{**base, **kw})


def answer(**kw):
    """The fields of desktop.rag.answer.Answer that a saved message keeps."""
    base = dict(mode="documents", abstained=False, stopped=False, confidence=0.82,
                citations=[Citation(1, passage()), Citation(2, passage(page=None, context=""), matched=True)],
                claims=[Claim("In locker 12 [1].", True, (1,)), Claim("Built in Norway.", False)],
                nearest=[], timings={"retrieve": 0.01234, "generate": 1.23456})
    return SimpleNamespace(**{**base, **kw})


def test_an_answer_is_stored_with_the_keys_it_always_had():
    record = AnswerRecord.from_answer(answer(), "work", "gemma")
    data = record.as_json()
    assert list(data) == ANSWER_KEYS
    assert data["collection"] == "work" and data["model"] == "gemma" and data["confidence"] == 0.82
    assert data["timings"] == {"retrieve": 0.012, "generate": 1.235}
    assert [list(c) for c in data["citations"]] == [SOURCE_KEYS, SOURCE_KEYS]
    assert data["citations"][0] == {
        "n": 1, "path": "/docs/pump manual.pdf", "page": 2, "char_start": 12, "char_end": 70,
        "text": "The spare impeller is stored in locker 12.", "heading": "Storage", "score": 0.031,
        "similarity": 0.64, "bm25": 4.1, "matched": False}
    assert data["citations"][1]["matched"] is True and data["citations"][1]["heading"] is None
    assert data["claims"] == [{"text": "In locker 12 [1].", "supported": True, "citations": [1]},
                              {"text": "Built in Norway.", "supported": False, "citations": []}]


def test_an_unfinished_answer_keeps_only_what_it_has():
    assert AnswerRecord(partial=True, collection="c").as_json() == {"partial": True, "collection": "c"}
    assert AnswerRecord(stopped=True, collection="c").as_json() == {"stopped": True, "collection": "c"}
    assert list(AnswerRecord(stopped=True, partial=True, collection="c").as_json()) == [
        "stopped", "partial", "collection"]
    assert AnswerRecord(error="The model failed", collection="c").as_json() == {
        "error": "The model failed", "collection": "c"}
    assert AnswerRecord().as_json() == {}  # a question's meta
    for data in ({"partial": True, "collection": "c"}, {"stopped": True, "partial": True, "collection": "c"},
                 {"error": "x", "collection": "c"}, {}, {"unreadable_meta": True}):
        assert AnswerRecord.from_json(data).as_json() == data


def test_an_answer_round_trips_through_the_chat_store(tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create("Pumps", "work")
    abstained = AnswerRecord.from_answer(
        answer(mode="abstained", abstained=True, citations=[], claims=[], confidence=None,
               nearest=[passage(), passage(path="/docs/b.txt", page=None)]), "work")
    records = [AnswerRecord.from_answer(answer(), "work", "gemma"), abstained,
               AnswerRecord(stopped=True, collection="work"), AnswerRecord(error="failed", collection="work")]
    store.add_message(conv.id, Message("user", "Where is the impeller?"))
    for record in records:
        store.add_message(conv.id, Message.answer("text", record))
    store.close()

    again = ChatStore(tmp_path / "chats.sqlite3")  # a restart
    messages = again.load(conv.id).messages
    assert messages[0].record == AnswerRecord()
    assert [m.record for m in messages[1:]] == records
    assert messages[1].record.citations[0] == Source.from_passage(passage(), 1)
    assert messages[2].record.nearest[1].location == "b.txt"
    assert again.load(conv.id).history()[-1]["role"] == "assistant"
    assert len(again.load(conv.id).history()) == 4  # the abstained answer is left out of the history
    again.close()


def test_rows_saved_by_an_older_version_load(tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create("Old", "default")
    store.close()
    old = {"mode": "documents", "abstained": False, "collection": "default",
           "citations": [{"n": 1, "path": "/docs/a.pdf", "page": 3, "text": "Torque is 25 Nm.",
                          "char_start": 4, "char_end": 20, "score": 0.02, "similarity": 0.5}],
           "claims": [{"text": "Torque is 25 Nm [1]."}]}
    db = sqlite3.connect(tmp_path / "chats.sqlite3")
    with db:
        db.execute("INSERT INTO messages(conversation_id, role, content, meta, created) VALUES (?, ?, ?, ?, ?)",
                   (conv.id, "assistant", "25 Nm [1].", json.dumps(old), 0.0))
        db.execute("INSERT INTO messages(conversation_id, role, content, meta, created) VALUES (?, ?, ?, ?, ?)",
                   (conv.id, "assistant", "damaged", "{not json", 0.0))
        db.execute("INSERT INTO messages(conversation_id, role, content, meta, created) VALUES (?, ?, ?, ?, ?)",
                   (conv.id, "assistant", "a list", "[1, 2]", 0.0))
    db.close()
    store = ChatStore(tmp_path / "chats.sqlite3")
    first, damaged, odd = (m.record for m in store.load(conv.id).messages)
    store.close()
    [source] = first.citations
    assert source == Source(n=1, path="/docs/a.pdf", page=3, char_start=4, char_end=20, text="Torque is 25 Nm.",
                            score=0.02, similarity=0.5)
    assert source.heading is None and not source.matched and source.location == "a.pdf, page 3"
    assert first.claims == [Claim("Torque is 25 Nm [1].", True, ())]  # no "supported": not marked
    assert first.model == "" and first.timings == {} and first.nearest == [] and not first.stopped
    assert damaged.unreadable and damaged.citations == []
    assert odd.unreadable
