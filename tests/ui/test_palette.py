"""Dark mode: the chat, the documents list and the source viewer take their colours from the
palette, and every text they draw keeps a WCAG contrast ratio of at least 4.5 against what is
behind it, measured on the rendered pixels of the real window under a light and a dark palette
(and after switching while it runs)."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPalette, QTextCursor
from PySide6.QtWidgets import QApplication

from desktop.chats import Message
from desktop.config import Paths, Settings
from desktop.rag.types import Source
from desktop.ui.documents import DocRow
from desktop.ui.theme import (
    MIN_CONTRAST,
    Colors,
    contrast_ratio,
    ensure_contrast,
    relative_luminance,
)

QUESTION = "Who led the Normans in 1066?"
ANSWER = ("William the Conqueror led the Normans at Hastings in 1066 [1]. "
          "He was crowned on Christmas Day [2]. He was born in Norway [1].")
CITATIONS = [
    {"n": 1, "path": "/docs/002_Normans.txt", "page": None, "text": "In 1066 William the Conqueror led the "
     "Normans to victory at the Battle of Hastings.", "similarity": 0.71, "bm25": 9.2, "score": 0.03},
    {"n": 2, "path": "/docs/history.pdf", "page": 4, "text": "William was crowned king on Christmas Day "
     "1066 in Westminster Abbey.", "similarity": 0.64, "bm25": 7.5, "score": 0.03},
]
CLAIMS = [
    {"text": "William the Conqueror led the Normans at Hastings in 1066 [1].", "supported": True, "citations": [1]},
    {"text": "He was crowned on Christmas Day [2].", "supported": True, "citations": [2]},
    {"text": "He was born in Norway [1].", "supported": False, "citations": [1]},
]


def palette(colors: dict[str, str]) -> QPalette:
    result = QPalette()
    for role, value in colors.items():
        result.setColor(getattr(QPalette.ColorRole, role), QColor(value))
    return result


def light_palette() -> QPalette:
    return QApplication.style().standardPalette()


def dark_palette() -> QPalette:
    """A dark palette as dark desktop themes give it (grey surfaces, light text, blue highlight)."""
    return palette({
        "Window": "#2d2d2d", "WindowText": "#e6e6e6", "Base": "#1e1e1e", "AlternateBase": "#262626",
        "Text": "#e6e6e6", "Button": "#353535", "ButtonText": "#e6e6e6", "BrightText": "#ff5555",
        "Highlight": "#3d7ac0", "HighlightedText": "#ffffff", "Link": "#2a82da", "LinkVisited": "#a070d0",
        "Mid": "#444444", "Dark": "#191919", "Light": "#505050", "Shadow": "#000000",
        "PlaceholderText": "#8a8a8a", "ToolTipBase": "#2d2d2d", "ToolTipText": "#e6e6e6",
    })


def black_palette() -> QPalette:
    """An OLED-style theme: black surfaces, a dark saturated highlight and link."""
    return palette({
        "Window": "#000000", "WindowText": "#ffffff", "Base": "#000000", "AlternateBase": "#0a0a0a",
        "Text": "#ffffff", "Button": "#111111", "ButtonText": "#ffffff", "Highlight": "#1b3a8c",
        "HighlightedText": "#ffffff", "Link": "#1b3a8c", "PlaceholderText": "#777777",
    })


PALETTES = {"light": light_palette, "dark": dark_palette}


@pytest.fixture
def app_palette(qapp):
    """Set the application palette for a test; the original comes back afterwards."""
    original = QPalette(qapp.palette())

    def use(make) -> None:
        qapp.setPalette(make())
        qapp.processEvents()

    yield use
    qapp.setPalette(original)
    qapp.processEvents()


@pytest.fixture
def chat_window(qtbot, sprig_home):
    """The real window on a temp data folder with one saved question and answer (no model
    needed: the answer is rendered from the chat store, as after a restart)."""
    from desktop.ui.window import MainWindow
    from desktop.ui.workers import live_workers

    windows = []

    def make():
        paths = Paths(sprig_home)
        window = MainWindow(paths, Settings(auto_load_model=False), auto_load=False, startup_jobs=False,
                            watch=False)
        conv = window.chats.create("Normans")
        window.chats.add_message(conv.id, Message("user", QUESTION))
        window.chats.add_message(conv.id, Message("assistant", ANSWER, {
            "mode": "general", "citations": CITATIONS, "claims": CLAIMS, "stopped": True}))
        window.chat.open(conv.id)
        window.resize(1200, 800)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
    qtbot.waitUntil(lambda: not live_workers(), timeout=30_000)


# ------------------------------------------------------------------ pixels
def rendered(qtbot, window) -> QImage:
    qtbot.wait(150)  # coalesced renders and layouts settle
    QApplication.processEvents()
    return window.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)


def widget_rect(window, widget, inner: QRect | None = None) -> QRect:
    rect = inner if inner is not None else widget.rect()
    top_left = widget.mapTo(window, rect.topLeft())
    return QRect(top_left, rect.size())


def measure(image: QImage, rect: QRect) -> tuple[QColor, QColor, float]:
    """(background, text colour, their contrast) in ``rect``: the background is the commonest
    pixel, the text the pixel that stands out most from it (glyph cores; anti-aliased edges
    only ever have less contrast)."""
    rect = rect.intersected(image.rect())
    assert rect.width() > 4 and rect.height() > 4, rect
    counts: Counter[int] = Counter()
    for y in range(rect.top(), rect.bottom() + 1):
        for x in range(rect.left(), rect.right() + 1):
            counts[image.pixel(x, y) & 0xFFFFFF] += 1
    background = QColor(counts.most_common(1)[0][0])
    text = max((QColor(rgb) for rgb in counts), key=lambda c: contrast_ratio(c, background))
    return background, text, contrast_ratio(text, background)


def same(a: QColor, b: QColor, tolerance: int = 3) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a.getRgb()[:3], b.getRgb()[:3], strict=True))


def span_rect(view, start: int, end: int) -> QRect:
    """Viewport rectangle of a run of text on one line of a MarkdownView."""
    cursor = QTextCursor(view.document())
    cursor.setPosition(start)
    first = view.cursorRect(cursor)
    cursor.setPosition(end)
    last = view.cursorRect(cursor)
    assert first.top() == last.top(), "the run wraps; widen the window"
    return QRect(first.topLeft(), last.bottomRight())


def chip_span(view) -> tuple[int, int]:
    block = view.document().begin()
    while block.isValid():
        for piece in block:
            fragment = piece.fragment()
            if fragment.charFormat().anchorHref() == "cite:2":
                return fragment.position(), fragment.position() + fragment.length()
        block = block.next()
    raise AssertionError("no chip for [2]")


def check_window(qtbot, window, dark: bool) -> None:
    colors = Colors.from_palette()
    image = rendered(qtbot, window)
    view = window.chat_view
    answer = view.last_answer()
    question = view.messages[0]
    results = {}

    # the answer bubble: palette-coloured background, body text readable
    bg, _text, ratio = results["answer text"] = measure(image, widget_rect(window, answer.text))
    assert same(bg, colors.answer), (bg.name(), colors.answer.name())
    assert (relative_luminance(bg) < 0.1) if dark else (relative_luminance(bg) > 0.8), bg.name()
    bg, _text, ratio = results["question text"] = measure(image, widget_rect(window, question.text))
    assert same(bg, colors.user), (bg.name(), colors.user.name())
    for name, label in [("who", answer.who), ("note", answer.status), ("sources title", answer.sources_title),
                        ("source head", answer.sources[0].head), ("source snippet", answer.sources[0].body),
                        ("scope hint", view.scope)]:
        assert label.isVisible(), name
        results[name] = measure(image, widget_rect(window, label))

    # the citation chip [2]: its own background, its number readable on it
    start, end = chip_span(answer.text)
    chip = span_rect(answer.text, start, end)
    bg, _text, _ratio = results["chip"] = measure(image, widget_rect(window, answer.text.viewport(), chip))
    assert same(bg, colors.chip), (bg.name(), colors.chip.name())

    # the "not supported" note: drawn in the warning colour, readable on the bubble
    found = answer.text.document().find("not supported by the cited evidence")
    assert not found.isNull()
    note = span_rect(answer.text, found.selectionStart(), found.selectionEnd())
    bg, text, _ratio = results["unsupported note"] = measure(image, widget_rect(window, answer.text.viewport(), note))
    assert contrast_ratio(text, colors.warning) < 1.3, (text.name(), colors.warning.name())
    assert contrast_ratio(text, colors.text) > 1.3, "the note looks like plain text"

    report = {name: f"{t.name()} on {b.name()}: {r:.2f}" for name, (b, t, r) in results.items()}
    failing = {name: line for name, (_b, _t, r), line in
               zip(results, results.values(), report.values(), strict=True) if r < MIN_CONTRAST}
    assert not failing, failing


@pytest.mark.parametrize("first,then", [("light", "dark"), ("dark", "light")])
def test_the_chat_is_readable_in_light_and_dark_palettes(qtbot, app_palette, chat_window, first, then):
    app_palette(PALETTES[first])
    window = chat_window()
    check_window(qtbot, window, dark=first == "dark")
    # the system theme switches while Sprig runs: the open chat follows at once
    app_palette(PALETTES[then])
    check_window(qtbot, window, dark=then == "dark")


# ------------------------------------------------------------------ documents list
STATUS_ROWS = [
    DocRow("/docs/report.pdf", "indexed", pages=12, chunks=48),
    DocRow("/docs/scan.pdf", "failed", reason="damaged PDF (the file could not be read)"),
    DocRow("/docs/notes.md", "queued"),
    DocRow("/docs/minutes.docx", "indexing", fraction=0.4),
]


def status_line_rect(window, row: int) -> QRect:
    """Where the delegate draws a row's status text (its second line, without the bar)."""
    panel = window.documents
    view = panel.list
    index = panel.model.index(row)
    detail = panel.model.rows[row].detail
    metrics = view.fontMetrics()
    rect = view.visualRect(index).adjusted(8, 4, -8, -4)
    line = metrics.height()
    text = QRect(rect.left(), rect.top() + line + 2, min(metrics.horizontalAdvance(detail), rect.width() // 2), line)
    return widget_rect(window, view.viewport(), text)


def check_statuses(qtbot, window) -> None:
    colors = Colors.from_palette()
    image = rendered(qtbot, window)
    expected = {"indexed": colors.success, "failed": colors.error, "queued": colors.muted, "indexing": colors.muted}
    results = {}
    for i, row in enumerate(window.documents.model.rows):
        bg, text, ratio = results[row.status] = measure(image, status_line_rect(window, i))
        # drawn on the list's own background, in the colour its status has in this palette
        assert same(bg, colors.answer), (row.status, bg.name(), colors.answer.name())
        assert contrast_ratio(text, expected[row.status]) < 1.3, (row.status, text.name(), expected[row.status].name())
    low = {status: f"{t.name()} on {b.name()}: {r:.2f}" for status, (b, t, r) in results.items() if r < MIN_CONTRAST}
    assert not low, low


@pytest.mark.parametrize("first,then", [("light", "dark"), ("dark", "light")])
def test_document_statuses_are_readable_in_light_and_dark_palettes(qtbot, app_palette, chat_window, first, then):
    app_palette(PALETTES[first])
    window = chat_window()
    panel = window.documents
    panel.model.set_rows(STATUS_ROWS)
    panel.stack.setCurrentWidget(panel.list)
    panel.list.clearSelection()
    check_statuses(qtbot, window)
    app_palette(PALETTES[then])
    check_statuses(qtbot, window)


# ------------------------------------------------------------------ source viewer
MARKED = "The treaty was signed at Falaise in 1174."


def marked_rect(window) -> QRect:
    """The marked passage (one line) in the window's coordinates."""
    view = window.viewer.text_view
    start, end = window.viewer.highlight
    cursor = QTextCursor(view.document())
    cursor.setPosition(start)
    first = view.cursorRect(cursor)
    cursor.setPosition(end)
    last = view.cursorRect(cursor)
    assert first.top() == last.top(), "the passage wraps; widen the viewer"
    return widget_rect(window, view.viewport(), QRect(first.topLeft(), last.bottomRight()).adjusted(2, 0, -2, 0))


def check_marked_passage(qtbot, window, dark: bool) -> None:
    colors = Colors.from_palette()
    image = rendered(qtbot, window)
    bg, text, ratio = measure(image, marked_rect(window))
    # the passage is marked (its background is the marker, not the page's), and readable on it
    assert same(bg, colors.marker), (bg.name(), colors.marker.name())
    assert not same(bg, colors.answer, tolerance=40), (bg.name(), colors.answer.name())
    assert (relative_luminance(bg) < 0.2) if dark else (relative_luminance(bg) > 0.6), bg.name()
    assert contrast_ratio(text, colors.text) < 1.3, (text.name(), colors.text.name())
    assert ratio >= MIN_CONTRAST, f"{text.name()} on {bg.name()}: {ratio:.2f}"


@pytest.mark.parametrize("first,then", [("light", "dark"), ("dark", "light")])
def test_the_marked_passage_is_readable_in_light_and_dark_palettes(qtbot, app_palette, chat_window, tmp_path,
                                                                  first, then):
    note = tmp_path / "chronicle.txt"
    intro = "Notes on the Norman kings.\n\n"
    note.write_text(intro + MARKED + "\n\nWilliam returned to Normandy the following spring.\n")
    app_palette(PALETTES[first])
    window = chat_window()
    window.resize(1400, 800)
    window.open_source(Source(n=1, path=str(note), page=None, text=MARKED,
                              char_start=len(intro), char_end=len(intro) + len(MARKED)))
    qtbot.waitUntil(lambda: window.viewer.highlight is not None, timeout=30_000)
    assert window.viewer.highlighted_text() == MARKED
    check_marked_passage(qtbot, window, dark=first == "dark")
    # the system theme switches while the source is open: the marker follows at once
    app_palette(PALETTES[then])
    check_marked_passage(qtbot, window, dark=then == "dark")


# ------------------------------------------------------------------ computed colours
@pytest.mark.parametrize("make", [light_palette, dark_palette, black_palette])
def test_every_text_colour_reaches_the_contrast_minimum_on_its_backgrounds(qapp, make):
    c = Colors.from_palette(make())
    pairs = {
        "text on answer": (c.text, c.answer), "text on question": (c.text, c.user),
        "chip": (c.chip_text, c.chip), "text on marker": (c.text, c.marker),
    }
    for fg in ("accent", "muted", "error", "warning", "success"):
        for bg in ("answer", "user", "transcript", "source", "window"):
            pairs[f"{fg} on {bg}"] = (getattr(c, fg), getattr(c, bg))
    pairs["muted on hovered source"] = (c.muted, c.source_hover)
    low = {name: round(contrast_ratio(a, b), 2) for name, (a, b) in pairs.items()
           if contrast_ratio(a, b) < MIN_CONTRAST}
    assert not low, low
    # nothing is a fixed light colour: in a dark palette every surface is dark
    if make is not light_palette:
        surfaces = ("transcript", "answer", "user", "source", "source_hover", "chip")
        assert all(relative_luminance(getattr(c, name)) < 0.08 for name in surfaces), \
            {f.name: getattr(c, f.name).name() for f in fields(c)}


def test_wcag_formulas_match_the_reference_values(qapp):
    assert contrast_ratio(QColor("#000000"), QColor("#ffffff")) == pytest.approx(21.0)
    assert contrast_ratio(QColor("#777777"), QColor("#ffffff")) == pytest.approx(4.48, abs=0.01)
    assert relative_luminance(QColor("#808080")) == pytest.approx(0.2159, abs=1e-4)
    # a colour too faint is moved just far enough, towards black on light and white on dark
    fixed = ensure_contrast(QColor("#aaaaaa"), [QColor("#ffffff")])
    assert MIN_CONTRAST <= contrast_ratio(fixed, QColor("#ffffff")) < 6
    fixed = ensure_contrast(QColor("#555555"), [QColor("#1e1e1e")])
    assert MIN_CONTRAST <= contrast_ratio(fixed, QColor("#1e1e1e")) < 6
