"""File > Export chat… (Ctrl+E): the open chat saved as Markdown, every citation resolved to
its file, page and quote (desktop.export writes it; the window picks the file and saves it
whole or not at all)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog

from desktop.chats import AnswerRecord, ChatStore, Message
from desktop.export import chat_markdown
from desktop.rag.types import Source
from tests.helpers.hostile import text_pdf

QUESTION = "Where is the spare impeller kept?"
ANSWER = "The spare impeller is stored in locker 12 of the east workshop [1]."


@pytest.fixture
def saved_chat(library, paths, tmp_path):
    """A chat as the window saves it: a question and a cited answer from a real indexed PDF."""
    pdf = tmp_path / "pump manual.pdf"
    pdf.write_bytes(text_pdf([["Pump manual.", "Read this manual first."],
                              ["Storage.", "The spare impeller is stored in locker 12 of the east workshop."]]))
    assert not library.index([pdf]).failed
    [hit] = [p for p in library.search("spare impeller locker", k=3) if p.page == 2][:1]
    store = ChatStore(paths.chats)
    conv = store.create("Pump questions", "default")
    store.add_message(conv.id, Message("user", QUESTION))
    store.add_message(conv.id, Message.answer(ANSWER, AnswerRecord(
        mode="documents", citations=[Source.from_passage(hit, 1)], collection="default")))
    store.close()
    return pdf, conv.id


def pick(monkeypatch, chosen: str, calls: list):
    def fake(parent, caption, directory, filter_):
        calls.append((caption, directory))
        return chosen, filter_

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake))


def test_ctrl_e_saves_the_open_chat_as_markdown(qtbot, make_window, library, saved_chat, tmp_path,
                                                monkeypatch):
    pdf, chat_id = saved_chat
    window = make_window(library=library)
    assert window.chat.current.id == chat_id  # the last chat opens at start
    assert window.export_action.shortcut() == QKeySequence("Ctrl+E")
    calls: list = []
    pick(monkeypatch, str(tmp_path / "out" / "pump chat"), calls)  # no suffix: .md is added
    (tmp_path / "out").mkdir()
    window.activateWindow()
    qtbot.waitActive(window)
    focus = window.documents.list
    focus.setFocus()
    qtbot.waitUntil(focus.hasFocus, timeout=2000)
    qtbot.keyClick(focus, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: (tmp_path / "out" / "pump chat.md").exists(), timeout=5000)
    [(caption, suggested)] = calls
    assert caption == "Export chat" and suggested.endswith("Pump questions.md")
    text = (tmp_path / "out" / "pump chat.md").read_text(encoding="utf-8")
    expected = chat_markdown(window.chats.load(chat_id))
    drop_time = lambda md: [line for line in md.splitlines() if "exported from Sprig" not in line]  # noqa: E731
    assert drop_time(text) == drop_time(expected)
    assert text.startswith("# Pump questions\n")
    assert QUESTION.replace("?", "") in text and "locker 12" in text
    assert f"**[1]** pump manual.pdf, page 2 — `{pdf}`" in text
    assert "> Storage. The spare impeller is stored in locker 12 of the east workshop.\n" in text
    assert window.statusBar().currentMessage() == f"Chat exported to {tmp_path / 'out' / 'pump chat.md'}"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pump chat.md"]  # no temp file left


def test_nothing_is_written_for_an_empty_chat_a_cancelled_dialog_or_a_bad_folder(
        qtbot, make_window, library, saved_chat, tmp_path, monkeypatch):
    window = make_window(library=library)
    calls: list = []
    pick(monkeypatch, "", calls)  # the user cancels the dialog
    assert window.export_chat() is None and len(calls) == 1
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file, not a folder", encoding="utf-8")
    assert window.export_chat(not_a_folder / "chat.md") is None
    message = window.statusBar().currentMessage()
    assert message == f"Could not export the chat to {not_a_folder / 'chat.md'}: Not a directory"
    assert not_a_folder.read_text(encoding="utf-8") == "a file, not a folder"
    window.new_chat()  # an empty chat: nothing to export, no dialog
    assert window.export_chat() is None and len(calls) == 1
    assert window.statusBar().currentMessage() == "Nothing to export: this chat has no messages yet"
