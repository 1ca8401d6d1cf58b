"""The chat on the real answer engine (Gemma 270M over the real library): streaming,
sources, Stop, keyboard, and a question asked while the model is still loading."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt

from tests.conftest import eval_path
from tests.ui.conftest import SQUAD, GapMeter

QUESTION = "Who was the Norman leader who conquered England in 1066?"


def index_normans(library):
    summary = library.index([eval_path(*SQUAD, "002_Normans.txt")])
    assert summary.indexed, summary.failed


def ask_by_keyboard(qtbot, window, text: str) -> None:
    box = window.chat_view.input
    box.setFocus()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_a_question_streams_an_answer_into_the_chat_with_its_sources(qtbot, make_window, library, engine):
    index_normans(library)
    window = make_window(library=library, engine=engine)
    streamed: list[str] = []
    window.chat.answer_text.connect(lambda _key, text: streamed.append(text))
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as finished:
        ask_by_keyboard(qtbot, window, QUESTION)
        assert window.chat_view.input.toPlainText() == ""  # sent
        assert window.chat_view.stop_button.isVisibleTo(window)
    _key, message = finished.args
    # it streamed: several growing texts, each a prefix of the next
    assert len(streamed) >= 2
    assert all(b.startswith(a) for a, b in zip(streamed, streamed[1:], strict=False))
    assert message.role == "assistant" and message.content.strip()
    assert not message.meta.get("abstained"), message.content
    citations = message.meta["citations"]
    assert citations and citations[0]["path"].endswith("002_Normans.txt")
    assert citations[0]["similarity"] is not None
    # the view: the answer's text and its sources with scores on hover
    bubble = window.chat_view.last_answer()
    assert bubble.plain_text.strip()
    assert bubble.sources_title.text() == "Sources"
    first = bubble.sources[0]
    assert first.head.text().startswith(f"[{citations[0]['n']}] 002_Normans.txt")
    assert "similarity" in first.toolTip() and "BM25" in first.toolTip()
    assert first.body.text().strip("“”…")[:40] in " ".join(citations[0]["text"].split())
    # citation numbers in the text are links (a source matched by shared words gets its number too)
    for n in {c["n"] for c in citations}:
        assert f"](cite:{n})" in bubble.text.markdown()
    # saved: the question when sent, the answer when done
    conv = window.chats.load(window.chat.current.id)
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    assert conv.messages[0].content == QUESTION
    assert conv.messages[1].meta["citations"] == citations
    assert not window.chat_view.stop_button.isVisibleTo(window)


def test_stop_ends_a_running_answer_at_once(qtbot, make_window, library, engine):
    index_normans(library)
    engine.max_answer_tokens = 300
    window = make_window(library=library, engine=engine)
    clicked = []

    def stop_once_words_arrive(_key, text):  # the user presses Stop as soon as words show
        if text.strip() and not clicked:
            clicked.append(window.chat.pending)
            window.chat_view.stop_button.click()

    window.chat.answer_text.connect(stop_once_words_arrive)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as provisional:
        window.chat_view.input.setPlainText("Describe in detail who the Normans were and where they came from.")
        window.chat_view.send_button.click()
    pending = clicked[0]
    assert pending is not None and pending.text.strip()
    # the view shows it stopped at once, and the chat is free again
    assert provisional.args[1].meta["stopped"]
    assert not window.chat.busy
    assert window.chat_view.send_button.isVisibleTo(window)
    assert window.chat_view.last_answer().status.text() == "Stopped."
    # the model halts before its next token; the stopped answer is saved as such
    qtbot.waitUntil(lambda: not pending.worker.is_running, timeout=5000)
    assert pending.stream.pieces_after_stop <= 1  # tokens the model produced after Stop
    qtbot.waitUntil(lambda: pending.message is not None and "timings" in pending.message.meta, timeout=5000)
    saved = window.chats.load(window.chat.current.id).messages[-1]
    assert saved.role == "assistant" and saved.meta["stopped"] is True
    assert saved.content.strip()
    assert pending.stream.result.stopped


def test_a_question_asked_before_the_model_is_ready_waits_visibly(qtbot, make_window, library, engine, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("SPRIG_MODELS", str(tmp_path / "models"))  # a first launch: nothing assembled yet
    index_normans(library)
    gate = threading.Event()
    calls = []

    def slow_loader(lib, settings, paths, progress):  # stands in for a slow first load
        calls.append(settings.model)
        gate.wait(60)
        return engine

    window = make_window(library=library, engine_loader=slow_loader)
    try:
        _wait_visibly(qtbot, window, gate, calls)
    finally:
        gate.set()


def _wait_visibly(qtbot, window, gate, calls):
    assert window.engine.state == "unloaded"
    # Shift+Enter is a new line, Enter sends
    box = window.chat_view.input
    box.setFocus()
    qtbot.keyClicks(box, "Who was the Norman leader")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(box, "who conquered England in 1066?")
    assert box.toPlainText() == "Who was the Norman leader\nwho conquered England in 1066?"
    assert window.chat.current is None
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    bubble = window.chat_view.last_answer()
    assert bubble.status.text().startswith("Waiting for the model")
    # this data folder has never held the bundled model: the status says it is being prepared
    # (the worker's report reaches the window through the event loop)
    qtbot.waitUntil(lambda: "First launch: preparing the bundled model" in window.model_status.text(), timeout=5000)
    # the window stays responsive while it waits
    meter = GapMeter()
    meter.start()
    qtbot.wait(1000)
    meter.stop()
    assert meter.worst_ms < 200 and len(meter.gaps) > 50
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as finished:
        gate.set()
    assert finished.args[1].meta.get("citations")
    assert window.engine.state == "ready" and "ready" in window.model_status.text()
    assert bubble.plain_text.strip()


def test_esc_stops_a_question_that_is_waiting_for_the_model(qtbot, make_window, library):
    gate = threading.Event()
    window = make_window(library=library, engine_loader=lambda *a: gate.wait(60) and None)
    try:
        ask_by_keyboard(qtbot, window, "Anything?")
        assert window.chat.busy
        qtbot.keyClick(window.chat_view.input, Qt.Key.Key_Escape)
        assert not window.chat.busy
        saved = window.chats.load(window.chat.current.id).messages
        assert [m.role for m in saved] == ["user", "assistant"] and saved[1].meta["stopped"]
    finally:
        gate.set()
