"""Colours from the palette: every colour the window paints is derived from the palette's roles.

Bubbles, notes, source cards, citation chips and the "not supported" marks are blends of
the palette's Base, Window, Text and Highlight, so a dark system theme gives a dark chat
with light text. A colour that must carry text (a muted note, an accent, an error) is then
pushed towards black or white until its WCAG 2 contrast ratio against every background it
is drawn on is at least 4.5 (the AA level for body text).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QColor, QGuiApplication, QPalette

MIN_CONTRAST = 4.5  # WCAG 2 AA, normal text

# hues with a meaning of their own; their lightness is fitted to the background
ERROR_HUE = QColor("#b3261e")
WARNING_HUE = QColor("#8a5300")
SUCCESS_HUE = QColor("#2e7d32")
MARKER_HUE = QColor("#ffd54a")  # a highlighter pen, behind the passage a source points to


def relative_luminance(color: QColor) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0 black .. 1 white)."""

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(color.redF()) + 0.7152 * linear(color.greenF()) + 0.0722 * linear(color.blueF())


def contrast_ratio(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio, 1 (same) .. 21 (black on white)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def blend(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` moved a fraction ``t`` of the way to ``b`` (opaque)."""
    return QColor.fromRgbF(
        a.redF() + (b.redF() - a.redF()) * t,
        a.greenF() + (b.greenF() - a.greenF()) * t,
        a.blueF() + (b.blueF() - a.blueF()) * t,
    )


def ensure_contrast(color: QColor, backgrounds: list[QColor], ratio: float = MIN_CONTRAST) -> QColor:
    """``color``, or the nearest shade of it towards black or white that reaches ``ratio``
    against every one of ``backgrounds``."""
    if all(contrast_ratio(color, bg) >= ratio for bg in backgrounds):
        return color
    # backgrounds of one theme are all light or all dark: move away from them
    mean = sum(relative_luminance(bg) for bg in backgrounds) / len(backgrounds)
    target = QColor("#000000") if mean > 0.18 else QColor("#ffffff")
    for step in range(1, 21):
        candidate = blend(color, target, step / 20)
        if all(contrast_ratio(candidate, bg) >= ratio for bg in backgrounds):
            return candidate
    return target


def marker_behind(text: QColor, base: QColor, strength: float) -> QColor:
    """The marker hue over ``base``, as strong as it can be while ``text`` stays readable on it."""
    for step in range(10, -1, -1):
        candidate = blend(base, MARKER_HUE, strength * step / 10)
        if contrast_ratio(text, candidate) >= MIN_CONTRAST:
            return candidate
    return base


def is_dark(palette: QPalette) -> bool:
    role = QPalette.ColorRole
    return relative_luminance(palette.color(role.Base)) < relative_luminance(palette.color(role.Text))


@dataclass(frozen=True)
class Colors:
    """The window's colours for one palette."""

    text: QColor
    window: QColor
    transcript: QColor  # behind the bubbles
    answer: QColor  # an answer's bubble
    user: QColor  # a question's bubble
    border: QColor
    accent: QColor  # "Sprig"/"You", "Sources": text in the highlight's hue
    muted: QColor  # hints, notes, snippets
    source: QColor  # a source card
    source_hover: QColor
    source_edge: QColor
    chip: QColor  # a citation number's background
    chip_text: QColor
    error: QColor
    warning: QColor  # the "not supported by the cited evidence" mark
    success: QColor
    marker: QColor  # behind a passage marked in a document (text stays the palette's Text)

    @classmethod
    def from_palette(cls, palette: QPalette | None = None) -> Colors:
        palette = palette or QGuiApplication.palette()
        role = QPalette.ColorRole
        base = palette.color(role.Base)
        text = palette.color(role.Text)
        window = palette.color(role.Window)
        highlight = palette.color(role.Highlight)
        dark = is_dark(palette)
        transcript = blend(base, window, 0.5)
        answer = base
        user = blend(base, highlight, 0.16 if dark else 0.10)
        source = blend(base, highlight, 0.10 if dark else 0.05)
        chip = blend(base, highlight, 0.30 if dark else 0.16)
        text_backgrounds = [transcript, answer, user, source, window]
        return cls(
            text=text,
            window=window,
            transcript=transcript,
            answer=answer,
            user=user,
            border=blend(base, text, 0.18),
            accent=ensure_contrast(highlight, text_backgrounds),
            muted=ensure_contrast(blend(text, base, 0.4), text_backgrounds),
            source=source,
            source_hover=blend(base, highlight, 0.20 if dark else 0.12),
            source_edge=highlight,
            chip=chip,
            chip_text=ensure_contrast(highlight, [chip]),
            error=ensure_contrast(ERROR_HUE, text_backgrounds),
            warning=ensure_contrast(WARNING_HUE, text_backgrounds),
            success=ensure_contrast(SUCCESS_HUE, text_backgrounds),
            marker=marker_behind(text, base, 0.35 if dark else 0.5),
        )


def style_sheet(c: Colors) -> str:
    """The window's style sheet for these colours (sizes and weights never change)."""
    return f"""
#panelTitle {{ font-weight: 600; font-size: 11pt; }}
#chatTitle {{ font-weight: 600; font-size: 12pt; }}
#hint {{ color: {c.muted.name()}; }}
#status {{ color: {c.muted.name()}; font-style: italic; }}
#error {{ color: {c.error.name()}; }}
#who {{ font-weight: 600; color: {c.accent.name()}; }}
#userMessage {{ background: {c.user.name()}; border-radius: 8px; }}
#answerMessage {{ background: {c.answer.name()}; border: 1px solid {c.border.name()}; border-radius: 8px; }}
#sourcesTitle {{ color: {c.accent.name()}; font-weight: 600; margin-top: 4px; }}
#source {{ background: {c.source.name()}; border-left: 3px solid {c.source_edge.name()}; border-radius: 3px; }}
#source:hover {{ background: {c.source_hover.name()}; }}
#sourceHead {{ font-weight: 600; }}
#sourceSnippet {{ color: {c.muted.name()}; }}
#transcript {{ background: {c.transcript.name()}; }}
"""


def follows_palette_change(event: QEvent) -> bool:
    return event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)


class PaletteFollower(QObject):
    """Keeps a widget's style sheet in step with the application palette (a theme switch
    while Sprig runs repaints it at once)."""

    def __init__(self, widget):
        super().__init__(widget)
        self.widget = widget
        self._sheet = ""
        self.apply()
        widget.installEventFilter(self)

    def apply(self) -> None:
        sheet = style_sheet(Colors.from_palette())
        if sheet != self._sheet:  # setting the same sheet again would re-polish for nothing
            self._sheet = sheet
            self.widget.setStyleSheet(sheet)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        if watched is self.widget and follows_palette_change(event):
            self.apply()
        return False
