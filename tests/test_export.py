"""A saved chat as Markdown: real retrieval over a real PDF, the chat store the window uses."""

from __future__ import annotations

import re

import pytest

from desktop.chats import AnswerRecord, ChatStore, Message
from desktop.export import chat_markdown, md_escape
from tests.helpers.hostile import text_pdf


class DraftModel:
    """Says a fixed draft, so the export of supported, unsupported and abstained answers is
    checked every time (real models are asked in tests/test_cli.py)."""

    n_ctx = 4096
    name = "draft"

    def __init__(self, draft: str):
        self.draft = draft

    def count(self, messages):
        return sum(len(m["content"]) // 4 for m in messages)

    def count_text(self, text):
        return len(text) // 4

    def truncate_text(self, text, max_tokens):
        return text[: max_tokens * 4]

    def stream(self, messages, max_tokens, temperature, should_stop=lambda: False):
        yield from re.findall(r"\S+\s*", self.draft)


@pytest.fixture(scope="module")
def manual(tmp_path_factory, embedder):
    """A three-page PDF manual, indexed into a real library."""
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    home = tmp_path_factory.mktemp("export")
    pdf = home / "pump manual.pdf"
    pdf.write_bytes(text_pdf([
        ["Pump manual.", "Read this manual before starting the pump."],
        ["Storage.", "The spare impeller is stored in locker 12 of the east workshop.",
         "The pump must be serviced every 500 hours."],
        ["Paint.", "The cabinet is painted green."],
    ]))
    lib = Library(Paths(home / "data"), Settings(), embedder=embedder)
    assert not lib.index([pdf]).failed
    yield lib, pdf
    lib.close()


def ask(lib, draft: str, question: str):
    from desktop.rag.answer import AnswerEngine

    stream = AnswerEngine(lib, DraftModel(draft), abstain_below=0.3).ask(question)
    "".join(stream)
    return stream.result


def test_every_citation_is_resolved_to_file_page_and_quote(manual, tmp_path):
    from desktop.rag.loaders import load_document

    lib, pdf = manual
    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create("Pump questions", "default")
    question = "Where is the spare impeller stored?"
    answer = ask(lib, "In locker 12 [1]. It was built in Norway [1].", question)
    assert answer.citations and [c.supported for c in answer.claims] == [True, False]
    store.add_message(conv.id, Message("user", question))
    store.add_message(conv.id, Message.answer(answer.text, AnswerRecord.from_answer(answer, "default", "draft")))
    uncovered = ask(lib, "unused", "Who won the 1998 FIFA World Cup final?")
    assert uncovered.abstained and uncovered.nearest
    store.add_message(conv.id, Message("user", "Who won the 1998 FIFA World Cup final?"))
    store.add_message(conv.id, Message.answer(uncovered.text, AnswerRecord.from_answer(uncovered, "default")))

    md = chat_markdown(store.load(conv.id))

    assert md.startswith("# Pump questions\n")
    assert "2 questions" in md
    assert md.count("### Question") == 2 and md.count("### Answer") == 2
    assert "Where is the spare impeller stored?" in md
    # the unsupported sentence is marked, the supported one is not
    assert "It was built in Norway [1]. *(not supported by the cited evidence)*" in md
    assert "In locker 12 [1]. *(not supported" not in md
    # each citation: number, file name and page, full path, and the quote, which is on that page
    pages = {p.number: " ".join(p.text.split()) for p in load_document(pdf)}
    for citation in answer.citations:
        page = citation.passage.page
        head = f"**[{citation.n}]** pump manual.pdf, page {page} — `{pdf}`"
        assert head in md, md
        quoted = md.split(head, 1)[1].split("\n\n", 2)[1]
        assert quoted.startswith("> ")
        text = quoted[2:].replace("\\", "")
        assert text == " ".join(citation.passage.text.split())
        assert text in pages[page]
    assert any(c.passage.page == 2 and "locker 12" in c.passage.text for c in answer.citations)
    # the abstained answer shows the passages it found, each with file, page and quote
    assert "**Nearest passages** (not enough to answer)" in md
    after = md.split("**Nearest passages**", 1)[1]
    assert re.search(r"pump manual\.pdf, page [123] — `", after)
    assert after.count("\n> ") == len(uncovered.nearest)
    store.close()


def test_stopped_failed_and_interrupted_answers_say_so(tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create("Notes", "work")
    store.add_message(conv.id, Message("user", "First?"))
    store.add_message(conv.id, Message("assistant", "The pump is", {"stopped": True, "collection": "work"}))
    store.add_message(conv.id, Message("user", "Second?"))
    store.add_message(conv.id, Message("assistant", "", {"error": "The model could not be loaded: no file"}))
    store.add_message(conv.id, Message("user", "Third?"))
    store.add_message(conv.id, Message("assistant", "Half an ans", {"partial": True}))
    md = chat_markdown(store.load(conv.id))
    assert "Collection `work` · 3 questions" in md
    assert "The pump is\n\n*Stopped.*" in md
    assert "*(no answer)*\n\n*The model could not be loaded: no file*" in md
    assert "*Interrupted: Sprig closed before this answer was finished.*" in md
    assert "**Sources**" not in md
    store.close()


def test_file_names_and_document_text_cannot_inject_markup_or_escape_sequences(tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create("*bold* <b>title</b>", "default")
    path = "/docs/evil`name\x1b[2J.txt"
    store.add_message(conv.id, Message("user", "# not a heading\n<script>alert(1)</script>"))
    store.add_message(conv.id, Message("assistant", "**Yes** [1]\x1b]0;pwned\x07", {
        "citations": [{"n": 1, "path": path, "page": None,
                       "text": "- a list?\n<img src=x onerror=alert(1)> [link](http://x) \u202eexe.pdf"}],
    }))
    md = chat_markdown(store.load(conv.id))
    assert "\x1b" not in md and "\x07" not in md and "\u202e" not in md
    assert md.startswith("# \\*bold\\* \\<b\\>title\\</b\\>\n")
    assert "\\# not a heading  \n\\<script\\>alert(1)\\</script\\>" in md  # as typed, not rendered
    assert "**Yes** [1]\\x1b]0;pwned\\x07" in md  # the answer keeps its own Markdown
    assert "— ``/docs/evil`name\\x1b[2J.txt``" in md  # a backtick in a path can't end the code span
    # (the bidi override is shown as the text \u202e: its backslash escaped for Markdown)
    assert "> \\- a list? \\<img src=x onerror=alert(1)\\> \\[link\\](http://x) \\\\u202eexe.pdf" in md
    store.close()


def test_md_escape_keeps_plain_text_readable():
    assert md_escape("Page 3, 1.5 kg (net) - ok") == "Page 3, 1.5 kg (net) - ok"
    assert md_escape("1. first") == "1\\. first"
    assert md_escape("a_b*c") == "a\\_b\\*c"
