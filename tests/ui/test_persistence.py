"""Nothing is lost: restarts show the earlier chats, documents and settings; quitting or a
crash in the middle of an answer keeps the question and what had streamed."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from PySide6.QtCore import QTimer

from desktop.chats import ChatStore
from desktop.config import Settings
from desktop.rag.library import Library
from desktop.ui.chat import display_text
from desktop.ui.markdown import linkify_citations
from desktop.ui.settings_dialog import SettingsDialog
from tests.conftest import REPO, eval_path
from tests.ui.conftest import PDF_4_PAGES, SQUAD, rows_by_name, wait_idle

QUESTION = "Who was the Norman leader who conquered England in 1066?"


def test_a_new_window_on_the_same_data_folder_shows_the_earlier_chats_and_documents(
        qtbot, make_window, library, engine, embedder, paths):
    first = make_window(library=library, engine=engine)
    article, pdf = eval_path(*SQUAD, "002_Normans.txt"), eval_path(*PDF_4_PAGES)
    first.add_paths([article, pdf])
    wait_idle(qtbot, first)
    with qtbot.waitSignal(first.chat.answer_finished, timeout=120_000) as done:
        first.chat_view.input.setPlainText(QUESTION)
        first.chat_view.send()
    answer = done.args[1]
    first.chat.rename(first.chat.current.id, "Normans")
    first.chat.new_chat("default")  # an empty second chat
    first.close()

    library_again = Library(paths, Settings(), embedder=embedder)
    second = make_window(library=library_again)
    try:
        assert sorted(second.chats_panel.titles()) == ["New chat", "Normans"]
        normans = next(c for c in second.chat.conversations() if c.title == "Normans")
        second.chat.open(normans.id)
        bubbles = second.chat_view.messages
        assert [b.role for b in bubbles] == ["user", "assistant"]
        assert bubbles[0].plain_text.strip() == QUESTION
        record = answer.record
        numbers = {c.n for c in record.citations}
        shown = display_text(answer.content, record)
        assert bubbles[1].text.markdown() == linkify_citations(shown, numbers)
        assert record.citations and [s.source for s in bubbles[1].sources] == record.citations
        qtbot.waitUntil(lambda: len(second.documents.model.rows) == 2, timeout=5000)
        rows = rows_by_name(second)
        assert rows[pdf.name].status == rows[article.name].status == "indexed"
        assert rows[pdf.name].pages == 4
    finally:
        second.close()
        library_again.close()


def test_settings_survive_a_restart(qtbot, make_window, paths, monkeypatch):
    first = make_window(settings=Settings.load(paths.settings))

    def fill_and_accept(dialog: SettingsDialog) -> int:
        dialog.model.setCurrentIndex(dialog.model.findData("bundled-gemma"))
        dialog.temperature.setValue(0.7)
        dialog.context.setCurrentIndex(dialog.context.findData(2048))
        dialog.passages.setValue(6)
        dialog.general.setChecked(True)
        dialog.system_prompt.setPlainText("Answer in French.")
        dialog.accept()
        return dialog.result()

    monkeypatch.setattr(SettingsDialog, "exec", fill_and_accept)
    first.open_settings()
    first.close()

    saved = Settings.load(paths.settings)
    assert (saved.model, saved.temperature, saved.context_size, saved.passages_per_answer) == \
        ("bundled-gemma", 0.7, 2048, 6)
    assert saved.allow_general_knowledge is True
    assert saved.system_prompts == {"default": "Answer in French."}
    second = make_window(settings=Settings.load(paths.settings))
    assert asdict(second.settings) == asdict(saved)
    dialog = SettingsDialog(second.settings, "default", second)
    assert dialog.model.currentData() == "bundled-gemma"
    assert dialog.temperature.value() == 0.7 and dialog.context.currentData() == 2048
    assert dialog.passages.value() == 6 and dialog.general.isChecked()
    assert dialog.system_prompt.toPlainText() == "Answer in French."
    dialog.deleteLater()


def test_a_bad_model_file_is_refused_with_its_reason(qtbot, make_window, tmp_path):
    window = make_window()
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all")
    dialog = SettingsDialog(window.settings, "default", window)
    dialog.model.setCurrentIndex(dialog.model.findData("custom"))
    dialog.model_path.setText(str(fake))
    dialog.accept()
    assert dialog.result() == 0 and dialog.isVisible() is False
    assert "model.gguf is not a GGUF model file" in dialog.error.text()
    dialog.deleteLater()


def test_quitting_mid_answer_keeps_the_question_and_the_partial_answer(qtbot, make_window, library, engine):
    library.index([eval_path(*SQUAD, "002_Normans.txt")])
    engine.max_answer_tokens = 300
    window = make_window(library=library, engine=engine)
    closed = []

    def quit_once_words_arrive(_key, text):
        if text.strip() and not closed:
            closed.append(text)
            # the user quits: this stops the answer, saves what streamed and waits for the worker
            QTimer.singleShot(0, window.close)

    window.chat.answer_text.connect(quit_once_words_arrive)
    window.chat_view.input.setPlainText("Who was the Norman leader who conquered England in 1066?")
    window.chat_view.send()
    conv_id = window.chat.current.id
    qtbot.waitUntil(lambda: bool(closed) and not window.isVisible(), timeout=120_000)
    store = ChatStore(window.paths.chats)
    try:
        messages = store.load(conv_id).messages
    finally:
        store.close()
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].content.strip() and messages[1].meta.get("stopped")
    again = make_window(library=library)
    again.chat.open(conv_id)
    assert again.chat_view.messages[1].status.text() == "Stopped."


def test_a_crash_mid_answer_loses_neither_the_question_nor_what_streamed(paths, library, gemma_path, make_window):
    library.index([eval_path(*SQUAD, "002_Normans.txt")])
    Settings(model=str(gemma_path), context_size=2048, max_answer_tokens=200,
             passages_per_answer=2).save(paths.settings)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "helpers" / "crash_driver.py"), str(paths.root),
         "Who was the Norman leader who conquered England in 1066?"],
        env=env, capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed, no clean shutdown
    streamed = proc.stdout.split("SAVED ", 1)[1].strip()
    store = ChatStore(paths.chats)
    try:
        conversations = store.list()
        messages = store.load(conversations[0].id).messages
    finally:
        store.close()
    assert messages[0].role == "user" and messages[0].content == "Who was the Norman leader who conquered England in 1066?"
    assert messages[1].role == "assistant" and messages[1].meta.get("partial") is True
    assert " ".join(messages[1].content.split()) == " ".join(streamed.split())
    window = make_window(library=library)
    window.chat.open(conversations[0].id)
    assert window.chat_view.messages[1].status.text().startswith("Interrupted")
