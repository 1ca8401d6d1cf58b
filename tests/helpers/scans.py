"""Image-only ("scanned") PDFs made in the test: text drawn with Pillow's own font, saved as
one image per page, so there is no text layer at all."""

from __future__ import annotations

from pathlib import Path

DPI = 150
LEFT_IN = 1.0  # text starts one inch from the left edge (72 points)
TOP_IN = 1.2
LINE_IN = 0.4

PAGES = [
    ["Quarterly report of the Harbour Trust", "The lighthouse keeper logged 412 ships in March."],
    ["Page two holds the budget table", "Dredging the north channel cost 1.7 million euros."],
    ["The third page closes the report", "The pelican colony on Gull Rock grew to 86 nests."],
]


def scan_pdf(path: Path, pages: list[list[str]] = PAGES, dpi: int = DPI, size_pt: float = 14.0) -> Path:
    """US Letter pages, each one grey image of its lines (black on white), at ``dpi``."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=round(dpi * size_pt / 72))
    images = []
    for lines in pages:
        image = Image.new("L", (round(8.5 * dpi), round(11 * dpi)), 255)
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((round(LEFT_IN * dpi), round((TOP_IN + i * LINE_IN) * dpi)), line, fill=0, font=font)
        images.append(image)
    images[0].save(path, save_all=True, append_images=images[1:], resolution=dpi)
    return path


def line_top_pt(index: int) -> float:
    """Where line ``index`` of a page starts, in points from the top."""
    return (TOP_IN + index * LINE_IN) * 72
