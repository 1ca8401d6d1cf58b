"""A saved source: what a chat message keeps about a passage, read back the same way."""

from __future__ import annotations

import json

from desktop.rag.types import Passage, Source, location_of


def passage(**kw) -> Passage:
    base = dict(chunk_id="c1", doc_id=1, path="/docs/manual.pdf", page=7, char_start=10, char_end=40,
                text="Torque the M8 bolts to 25 Nm.", score=0.031, similarity=0.61, bm25=3.2,
                context="Assembly")
    return Passage(**{**base, **kw})


def test_a_source_keeps_what_the_passage_said_and_where():
    source = Source.from_passage(passage(), n=2, matched=True)
    assert source.as_json() == {
        "n": 2, "path": "/docs/manual.pdf", "page": 7, "char_start": 10, "char_end": 40,
        "text": "Torque the M8 bolts to 25 Nm.", "heading": "Assembly", "score": 0.031,
        "similarity": 0.61, "bm25": 3.2, "matched": True,
    }
    assert list(source.as_json()) == ["n", "path", "page", "char_start", "char_end", "text", "heading",
                                      "score", "similarity", "bm25", "matched"]
    assert Source.from_passage(passage(context="")).heading is None  # no heading is stored as null


def test_a_source_round_trips_through_json():
    for source in (Source.from_passage(passage(), n=1), Source.from_passage(passage(page=None), matched=True)):
        assert Source.from_json(json.loads(json.dumps(source.as_json()))) == source


def test_a_source_saved_by_an_older_version_loads():
    old = {"n": 1, "path": "/docs/a.txt", "page": None, "text": "Something close.", "similarity": 0.3}
    source = Source.from_json(old)
    assert source == Source(n=1, path="/docs/a.txt", text="Something close.", similarity=0.3)
    assert source.heading is None and source.matched is False and source.char_start == source.char_end == 0
    assert Source.from_json({}) == Source()
    # damaged values are dropped, not raised
    assert Source.from_json({"page": "x", "score": "high", "char_start": None}) == Source()


def test_a_passage_and_its_source_name_the_same_place():
    for page in (7, None):
        p = passage(page=page, path="/docs/invoice\u202eexe.pdf")
        assert Source.from_passage(p).location == p.location == location_of(p.path, p.page)
    assert passage().location == "manual.pdf, page 7"
    assert passage(page=None).location == "manual.pdf"
    assert "\u202e" not in passage(path="/docs/a\u202eb.pdf").location  # shown escaped
    assert Source().location == "" and location_of("", 3, unnamed="unknown file") == "unknown file, page 3"


def test_a_passage_as_search_json():
    assert passage().as_json() == {
        "path": "/docs/manual.pdf", "page": 7, "text": "Torque the M8 bolts to 25 Nm.", "score": 0.031,
        "similarity": 0.61, "bm25": 3.2, "char_start": 10, "char_end": 40, "chunk_id": "c1",
    }
