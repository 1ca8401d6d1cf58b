"""Summaries in the window: from a document's menu, the Chat menu and the collection menu;
progress, points appearing while the rest is read, page links that open the source viewer,
Stop, closing the window mid-way, and waiting for the model.

The model here is a stand-in that copies the first sentences of each part, so what each
point must cite is known; the real models are tested in tests/rag/test_summarize.py.
"""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

from PySide6.QtCore import Qt

from desktop.ui.workers import live_workers
from tests.helpers.hostile import text_pdf

MACHINES = ["pump", "boiler", "chiller", "compressor", "turbine", "heater", "blower", "mixer", "grinder",
            "conveyor", "crane", "generator"]
PLACES = ["north hall", "east yard", "west wing", "cold store", "paint shop", "loading dock", "print room",
          "bakery", "laboratory", "garage", "greenhouse", "cellar"]
PARTS = ["impeller", "burner", "gasket", "piston", "rotor", "element", "belt", "paddle", "blade", "roller",
         "hook", "brush"]
CREWS = ["night crew", "electricians", "apprentices", "plumbers", "welders", "engineers", "cleaners",
         "bakers", "chemists", "mechanics", "gardeners", "porters"]


def manual_pages(pages: int) -> list[list[str]]:
    """One machine a page, each sentence in words no other page uses."""
    return [[f"The {MACHINES[i]} serves the {PLACES[i]}.",
             f"Its spare {PARTS[i]} waits in locker {i + 1}.",
             f"The {CREWS[i]} inspect the {MACHINES[i]} every {i + 2} weeks."] for i in range(pages)]


def page_of(text: str) -> int:
    """The page a sentence of ``manual_pages`` is on."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return next(i + 1 for i in range(len(MACHINES))
                if {MACHINES[i], *PLACES[i].split(), PARTS[i], *CREWS[i].split()} & words)


class CopyingModel:
    """Writes the first two sentences of each part as its points, a word at a time (``delay``
    seconds a word; a word counts as a token); the summary repeats the first point."""

    name = "copying model"
    has_chat_template = True

    def __init__(self, n_ctx: int = 4096, delay: float = 0.0):
        self.n_ctx = n_ctx
        self.delay = delay
        self.calls = 0
        self.words = 0
        self.prompts: list[str] = []

    def count_text(self, text: str) -> int:
        return len(text.split())

    def truncate_text(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])

    def count(self, messages) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def stream(self, messages, max_tokens=256, temperature=0.0, should_stop=lambda: False):
        self.calls += 1
        body = messages[-1]["content"]
        self.prompts.append(body)
        part = re.search(r"Text \([^)]*\):\n(.*)\n\n", body, re.S)  # up to the instruction repeated
        if part:
            sentences = re.findall(r"[^.]+\.", part.group(1))[:2]
            draft = "".join(f"- {s.strip()}\n" for s in sentences)
        else:
            draft = re.search(r"^- (.*)$", body, re.M).group(1)
        for word in re.findall(r"\S+\s*", draft):
            if should_stop():
                return
            time.sleep(self.delay)
            self.words += 1
            yield word


def index_manual(library, tmp_path, pages: int):
    pdf = tmp_path / "pump manual.pdf"
    pdf.write_bytes(text_pdf(manual_pages(pages)))
    assert not library.index([pdf]).failed
    return pdf


def row_index(window, path):
    model = window.documents.model
    return model.index([r.path for r in model.rows].index(str(path)))


def action(menu, text: str):
    return next(a for a in menu.actions() if a.text() == text)


def test_a_document_is_summarized_from_its_menu_with_page_links(qtbot, make_window, library, tmp_path):
    pdf = index_manual(library, tmp_path, pages=8)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"garbage" * 100)
    library.index([broken])
    model = CopyingModel(n_ctx=420, delay=0.02)  # parts of about 120 words: several of them
    window = make_window(library=library, engine=SimpleNamespace(model=model))
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 2, timeout=5000)
    assert not action(window.documents.context_menu(row_index(window, broken)), "Summarize…").isEnabled()
    summarize = action(window.documents.context_menu(row_index(window, pdf)), "Summarize…")
    assert summarize.isEnabled()
    summarize.trigger()
    dialog = window.summaries[-1]
    bar = []
    dialog.bar.valueChanged.connect(bar.append)  # (the worker's reports arrive from the event loop)
    assert dialog.isVisible() and dialog.windowTitle() == "Summary of pump manual.pdf"
    # points appear while later parts are still being read, with the progress
    qtbot.waitUntil(lambda: bool(dialog.point_widgets), timeout=20_000)
    assert dialog.running and dialog.stop_button.isVisible()
    assert dialog.status.text().startswith("Reading part ") and dialog.bar.value() < 1000
    qtbot.waitUntil(lambda: not dialog.running, timeout=60_000)
    assert bar == sorted(bar) and any(0 < v < 1000 for v in bar) and bar[-1] == 1000
    assert dialog.status.text().startswith("Done · ") and "from 8 pages" in dialog.status.text()
    assert dialog.bar.value() == 1000 and not dialog.stop_button.isVisible()
    result = dialog.result
    assert result.sections >= 2 and result.sections_done == result.sections
    assert dialog.summary_label.isVisible() and dialog.summary_label.text() == result.summary
    # every point cites the page its sentence is on, as a link
    assert len(dialog.point_widgets) == len(result.points) >= 4
    for widget in dialog.point_widgets:
        page = page_of(widget.point.text)
        assert [(c.path, c.page) for c in widget.point.citations] == [(str(pdf), page)]
        assert f'<a href="0">page {page}</a>' in widget.label.text()
        assert widget.point.text in widget.label.text()
    # a click on a page link opens the source viewer at that page
    widget = dialog.point_widgets[-1]
    widget.open_citation(0)
    page = page_of(widget.point.text)
    assert window.viewer.isVisible()
    assert window.viewer.title.text() == f"pump manual.pdf, page {page}"
    # Copy puts the points and their pages on the clipboard
    dialog.copy_button.click()
    from PySide6.QtWidgets import QApplication

    copied = QApplication.clipboard().text()
    assert f"- {widget.point.text} (page {page})" in copied and result.summary in copied


def test_stop_ends_a_summary_mid_way_and_keeps_its_points(qtbot, make_window, library, tmp_path):
    index_manual(library, tmp_path, pages=12)
    model = CopyingModel(n_ctx=420, delay=0.05)
    window = make_window(library=library, engine=SimpleNamespace(model=model))
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 1, timeout=5000)
    dialog = window.summarize(window.documents.model.rows[0].path)
    qtbot.waitUntil(lambda: bool(dialog.point_widgets), timeout=20_000)
    qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    stopped_at = time.monotonic()
    qtbot.waitUntil(lambda: not dialog.running, timeout=5000)
    assert time.monotonic() - stopped_at < 2.0  # within a word, not at the end of the part
    result = dialog.result
    assert result.stopped and result.sections_done < result.sections
    assert dialog.status.text().startswith(f"Stopped after {result.sections_done} of {result.sections} parts")
    assert len(dialog.point_widgets) == len(result.points) >= 1
    calls, words = model.calls, model.words
    qtbot.wait(500)
    assert (model.calls, model.words) == (calls, words)  # the model is left alone
    assert not dialog.stop_button.isVisible()


def test_the_chat_menu_summarizes_the_selected_document_or_the_collection(qtbot, make_window, library,
                                                                           tmp_path):
    pdf = index_manual(library, tmp_path, pages=3)
    window = make_window(library=library, engine=SimpleNamespace(model=CopyingModel(n_ctx=420)))
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 1, timeout=5000)
    window.summarize_action.trigger()  # nothing selected: it says what to do
    assert window.statusBar().currentMessage() == "Select an indexed document first"
    assert not window.summaries
    window.documents.list.selectionModel().select(
        row_index(window, pdf), window.documents.list.selectionModel().SelectionFlag.Select)
    window.summarize_action.trigger()
    [dialog] = window.summaries
    assert dialog.path == str(pdf)
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert len(dialog.points) >= 2
    assert all([c.page for c in p.citations] == [page_of(p.text)] for p in dialog.points)
    # the collection's menu: every document of the collection
    action(window.documents.collection_menu.menu(), "Summarize this collection…").trigger()
    whole = window.summaries[-1]
    assert whole.path is None and whole.windowTitle() == "Summary of the collection “default”"
    qtbot.waitUntil(lambda: not whole.running, timeout=30_000)
    assert whole.status.text().startswith("Done · ")
    # across a collection, each link names the file and the page
    assert "pump manual.pdf, page 1</a>" in whole.point_widgets[0].label.text()


def test_closing_the_window_stops_a_running_summary(qtbot, make_window, library, tmp_path):
    index_manual(library, tmp_path, pages=12)
    model = CopyingModel(n_ctx=420, delay=0.05)
    window = make_window(library=library, engine=SimpleNamespace(model=model))
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 1, timeout=5000)
    dialog = window.summarize(None)
    qtbot.waitUntil(lambda: bool(dialog.point_widgets), timeout=20_000)
    words = model.words
    window.close()
    assert model.words <= words + 1  # stopped within a word, before the model was closed
    qtbot.waitUntil(lambda: not live_workers(), timeout=5000)
    qtbot.wait(300)
    assert model.words <= words + 1


def test_a_summary_waits_visibly_for_the_model(qtbot, make_window, library, tmp_path):
    index_manual(library, tmp_path, pages=2)
    gate = threading.Event()
    engine = SimpleNamespace(model=CopyingModel())

    def slow_loader(lib, settings, paths, progress):  # stands in for a slow first load
        gate.wait(60)
        return engine

    window = make_window(library=library, engine_loader=slow_loader)
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 1, timeout=5000)
    try:
        dialog = window.summarize(window.documents.model.rows[0].path)
        qtbot.waitUntil(lambda: dialog.status.text().startswith("Waiting for the model"), timeout=5000)
        assert dialog.running and not dialog.points
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert dialog.status.text().startswith("Done · ") and len(dialog.points) == 2


def test_a_task_over_the_whole_document_lists_what_it_finds(qtbot, make_window, library, tmp_path,
                                                            monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    pdf = index_manual(library, tmp_path, pages=6)
    model = CopyingModel(n_ctx=420)
    window = make_window(library=library, engine=SimpleNamespace(model=model))
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 1, timeout=5000)
    asked = []
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(
        lambda parent, title, label: asked.append(label) or ("list  every spare part", True)))
    window.documents.list.selectionModel().select(
        row_index(window, pdf), window.documents.list.selectionModel().SelectionFlag.Select)
    window.task_action.trigger()
    assert "every page of pump manual.pdf" in asked[0]
    dialog = window.summaries[-1]
    assert dialog.task == "list every spare part"
    assert dialog.windowTitle() == "“list every spare part” in pump manual.pdf"
    qtbot.waitUntil(lambda: not dialog.running, timeout=30_000)
    assert dialog.status.text().startswith("Done · ") and len(dialog.points) >= 2
    # the task is in every prompt the model was given
    assert all('"list every spare part"' in b or "Task: list every spare part\n" in b for b in model.prompts)
    assert all([c.page for c in p.citations] == [page_of(p.text)] for p in dialog.points)


def test_a_model_that_cannot_load_is_said_in_the_summary_window(qtbot, make_window, library, tmp_path):
    from desktop.errors import ModelError

    index_manual(library, tmp_path, pages=2)

    def broken_loader(lib, settings, paths, progress):
        raise ModelError("Cannot load model.gguf: not a GGUF file")

    window = make_window(library=library, engine_loader=broken_loader)
    qtbot.waitUntil(lambda: len(window.documents.model.rows) == 1, timeout=5000)
    dialog = window.summarize(window.documents.model.rows[0].path)
    with qtbot.waitSignal(dialog.summary_done, timeout=10_000) as done:
        pass
    assert done.args == [None]
    assert dialog.status.text() == "The model could not be loaded: Cannot load model.gguf: not a GGUF file"
    assert not dialog.running and not dialog.stop_button.isVisible() and not dialog.points


def test_an_empty_collection_says_there_is_nothing_to_summarize(qtbot, make_window, library):
    window = make_window(library=library, engine=SimpleNamespace(model=CopyingModel()))
    dialog = window.summarize(None, "empty")
    qtbot.waitUntil(lambda: not dialog.running, timeout=10_000)
    assert dialog.status.text() == "The collection 'empty' has no indexed documents with text to summarize"
    assert not dialog.points and not dialog.copy_button.isEnabled()
