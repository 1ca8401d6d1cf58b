"""Clicking a citation opens the source inside the app, at the passage."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from desktop.rag.types import Source
from desktop.ui.viewer import normalise
from tests.conftest import eval_path
from tests.ui.conftest import SQUAD

PEPSICO = ("financebench", "pdfs", "PEPSICO_2023_8K_dated-2023-05-05.pdf")


def click_citation(qtbot, markdown_view, n: int) -> None:
    """Click the rendered [n] link with the mouse."""
    document = markdown_view.document()
    block = document.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().anchorHref() == f"cite:{n}":
                cursor = QTextCursor(document)
                cursor.setPosition(fragment.position() + 1)
                point = markdown_view.cursorRect(cursor).center()
                qtbot.mouseClick(markdown_view.viewport(), Qt.MouseButton.LeftButton, pos=point)
                return
            it += 1
        block = block.next()
    raise AssertionError(f"no link for [{n}] in {markdown_view.markdown()!r}")


def test_clicking_a_citation_opens_the_pdf_at_the_cited_page_with_the_passage_highlighted(
        qtbot, make_window, library, engine):
    pdf = eval_path(*PEPSICO)
    assert library.index([pdf]).indexed
    window = make_window(library=library, engine=engine)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as done:
        window.chat_view.input.setPlainText("When did PepsiCo hold its 2023 Annual Meeting of Shareholders?")
        window.chat_view.send()
    citation = done.args[1].record.citations[0]
    assert citation.path == str(pdf) and citation.page and citation.page > 1
    page = citation.page
    assert not window.viewer.isVisible()
    click_citation(qtbot, window.chat_view.last_answer().text, citation.n)
    qtbot.waitUntil(lambda: window.viewer.isVisible() and window.viewer.highlighted_result is not None,
                    timeout=10_000)
    viewer = window.viewer
    assert viewer.stack.currentWidget() is viewer.pdf_view
    assert viewer.title.text() == f"{pdf.name}, page {page}"
    assert viewer.current_page == page - 1
    result = viewer.highlighted_result
    assert result.page() == page - 1 and result.rectangles()
    # what is highlighted is the cited passage (as the PDF's own text layer has it)
    phrase = normalise(viewer.search.searchString())
    assert len(phrase) > 40 and phrase in normalise(citation.text)
    assert phrase in normalise(viewer.pdf.getAllText(page - 1).text())
    assert window.splitter.sizes()[2] > 0
    window.escape()  # Esc closes the viewer when no answer is running
    assert not viewer.isVisible()


def test_a_text_source_opens_as_text_scrolled_to_the_passage(qtbot, make_window, library):
    article = eval_path(*SQUAD, "002_Normans.txt")
    library.index([article])
    passages = library.search("Norman conquest of England 1066 William", k=5)
    deep = max(passages, key=lambda p: p.char_start)
    assert deep.char_start > 5000
    window = make_window(library=library)
    window.open_source(Source.from_passage(deep, 1))
    viewer = window.viewer
    qtbot.waitUntil(lambda: viewer.highlight is not None, timeout=30_000)
    assert viewer.stack.currentWidget() is viewer.text_view
    assert viewer.highlighted_text() == deep.text
    assert viewer.highlight[0] == deep.char_start
    qtbot.waitUntil(lambda: viewer.text_view.verticalScrollBar().value() > 0, timeout=2000)
    rect = viewer.text_view.cursorRect()
    assert 0 <= rect.top() < viewer.text_view.viewport().height()
    assert viewer.text_view.extraSelections()


def test_a_source_whose_file_is_gone_says_so(qtbot, make_window, library, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("The torque for the M8 bolts is 25 newton metres.\n" * 3)
    library.index([note])
    passage = library.search("torque M8 bolts", k=1)[0]
    note.unlink()
    window = make_window(library=library)
    window.open_source(Source.from_passage(passage, 1))
    assert window.viewer.stack.currentWidget() is window.viewer.message
    assert f"no longer at {note}" in window.viewer.message.text()


def test_a_phrase_spelled_plainly_is_searched_as_the_pdf_prints_it():
    from desktop.ui.viewer import as_printed

    printed = "\u2212\u2212strip\u2212components=NUMBER Strip NUMBER leading components"
    assert as_printed("--strip-components=NUMBER Strip", printed) == "\u2212\u2212strip\u2212components=NUMBER Strip"
    assert as_printed("leading components", printed) == "leading components"
    assert as_printed("not on the page", printed) == "not on the page"


def test_a_colleagues_document_in_a_shared_library_shows_the_cited_passage(qtbot, make_window):
    window = make_window()
    window.open_source(Source(path="shared://alice/home/alice/pump-manual.txt", page=None,
                              text="The spare impeller is stored in locker 12.", char_start=0, char_end=42))
    assert window.viewer.stack.currentWidget() is window.viewer.message
    shown = window.viewer.message.text()
    assert "added to the shared library by alice" in shown and "stored in locker 12" in shown
    assert window.viewer.title.text() == "pump-manual.txt"


def test_the_documents_panel_says_who_added_a_shared_document():
    from types import SimpleNamespace

    from desktop.ui.documents import build_rows

    doc = SimpleNamespace(path="shared://bob/srv/q3.pdf", status="indexed", pages=9, chunks=40, reason=None,
                          added_by="bob")
    row = build_rows([doc], [], None)[0]
    assert row.name == "q3.pdf" and row.detail == "Indexed · 9 pages · 40 chunks · added by bob"
