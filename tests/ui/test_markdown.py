"""Answers are untrusted: rendered as Markdown, nothing loaded, no link followed but citations."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

from desktop.chats import AnswerRecord, Message
from desktop.rag.grounding import Claim
from desktop.rag.types import Source
from desktop.ui.chat import MessageWidget, display_text
from desktop.ui.markdown import MarkdownView, citation_number, linkify_citations


def test_citations_become_links_only_for_known_sources_and_not_in_code():
    text = "Paris [1]. Also [2, 3] and [9]. See `x[1]` and [1](http://a)."
    out = linkify_citations(text, {1, 2, 3})
    assert "[\\[1\\]](cite:1)" in out
    assert "[\\[2\\]](cite:2)[\\[3\\]](cite:3)" in out
    assert "[9]" in out and "cite:9" not in out
    assert "`x[1]`" in out
    assert "[1](http://a)" in out  # an existing Markdown link is not rewritten
    assert citation_number(QUrl("cite:3")) == 3
    assert citation_number(QUrl("https://example.com/3")) is None


def test_nothing_an_answer_names_is_loaded(qtbot, tmp_path, monkeypatch):
    png = tmp_path / "secret.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    calls = []

    class Recording(MarkdownView):
        def loadResource(self, kind, url):  # noqa: N802
            result = super().loadResource(kind, url)
            calls.append((url.toString(), result))
            return result

    view = Recording()
    qtbot.addWidget(view)
    view.resize(400, 200)
    view.set_markdown(f"![a]({png.as_uri()}) ![b](https://tracker.invalid/p.png) <img src='{png}'> **bold**")
    view.show()
    qtbot.waitExposed(view)
    view.repaint()
    assert all(result is None for _url, result in calls)
    assert "<img src=" in view.toPlainText()  # raw HTML is shown as text, never rendered
    assert "bold" in view.toPlainText() and "**" not in view.toPlainText()


def test_only_citation_links_do_anything(qtbot, monkeypatch):
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    view = MarkdownView()
    qtbot.addWidget(view)
    clicked = []
    view.citation_clicked.connect(clicked.append)
    view.anchorClicked.emit(QUrl("https://evil.invalid/"))
    view.anchorClicked.emit(QUrl("file:///etc/passwd"))
    view.anchorClicked.emit(QUrl("cite:2"))
    assert clicked == [2] and opened == []
    assert not view.openLinks() and not view.openExternalLinks()


def test_an_answer_shows_its_sources_and_the_matched_citation_number(qtbot):
    source = Source(n=1, path="/docs/manual.pdf", page=7, text="Torque  the M8 bolts\nto 25 Nm.",
                    similarity=0.61, bm25=3.2, score=0.031, matched=True)
    widget = MessageWidget("assistant")
    qtbot.addWidget(widget)
    widget.set_message(Message("assistant", "Use 25 Nm.", {"citations": [source.as_json()]}))
    assert display_text("Use 25 Nm.", AnswerRecord(citations=[source])) == "Use 25 Nm. [1]"
    assert "[\\[1\\]](cite:1)" in widget.text.markdown()
    item = widget.sources[0]
    assert item.head.text() == "[1] manual.pdf, page 7"
    assert item.body.text() == "“Torque the M8 bolts to 25 Nm.”"
    assert "similarity 0.610" in item.toolTip() and "keyword (BM25) 3.20" in item.toolTip()
    assert "matched by shared words" in item.toolTip()
    clicked = []
    widget.source_clicked.connect(clicked.append)
    widget.text.citation_clicked.emit(1)
    assert clicked == [source]


def test_an_abstention_shows_the_nearest_passages(qtbot):
    # (a row as an older version saved it: no heading, no matched flag)
    nearest = [{"n": None, "path": "/docs/a.txt", "page": None, "text": "Something close.", "similarity": 0.3}]
    widget = MessageWidget("assistant")
    qtbot.addWidget(widget)
    widget.set_message(Message("assistant", "I couldn't find this in your documents.",
                               {"abstained": True, "nearest": nearest, "citations": []}))
    assert widget.sources_title.text() == "Nearest passages (not enough to answer)"
    assert widget.sources[0].head.text() == "a.txt"


def test_unsupported_sentences_are_marked_and_quotes_say_so(qtbot):
    source = Source(n=1, path="/docs/manual.pdf", page=2, text="Service every 500 hours.")
    claims = [Claim("Service it every 500 hours [1].", True, (1,)), Claim("It was built in Norway [1].", False, (1,))]
    shown = display_text("Service it every 500 hours [1]. It was built in Norway [1].",
                         AnswerRecord(citations=[source], claims=claims))
    assert shown == ("Service it every 500 hours [1]. It was built in Norway [1]."
                     " *(not supported by the cited evidence)*")
    widget = MessageWidget("assistant")
    qtbot.addWidget(widget)
    widget.set_message(Message.answer("Your documents say: “Service every 500 hours.” [1]",
                                      AnswerRecord(mode="quoted", citations=[source])))
    assert "Quoted from your documents" in widget.status.text()
    assert "not supported" not in display_text("Service it every 500 hours [1].",
                                               AnswerRecord(citations=[source], claims=claims[:1]))


def test_a_source_shows_the_heading_its_line_sits_under_in_the_window_and_the_export(qtbot):
    from desktop.chats import Conversation
    from desktop.export import chat_markdown
    from desktop.ui.chat import SourceItem

    source = Source(n=1, path="/docs/libpump.pdf", page=12, text="Discards every queued command.",
                    heading="pump flush [Function] int pump_flush (pump_handle * handle)\u202e")
    item = SourceItem(source)
    qtbot.addWidget(item)
    assert item.head.text().startswith("[1] libpump.pdf, page 12 · pump flush [Function] int pump_flush")
    assert "\u202e" not in item.head.text()  # a bidi override from a document is shown escaped
    meta = AnswerRecord(mode="documents", citations=[source]).as_json()
    conv = Conversation(1, "Pumps", "default", 0.0, 0.0,
                        [Message("user", "Which function discards queued commands?"),
                         Message("assistant", "pump_flush [1]", meta)])
    md = chat_markdown(conv)
    assert "— under pump flush \\[Function\\] int pump\\_flush" in md, md
