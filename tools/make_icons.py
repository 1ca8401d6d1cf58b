"""Draw Sprig's icon with Qt and write it in the formats the platforms want.

    python tools/make_icons.py        # writes desktop/assets/sprig.png, sprig-<size>.png, sprig.ico, sprig.icns

The icon is drawn from code (a green sprig on a rounded square), so it can be regenerated
and needs no image editor.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "desktop" / "assets"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)


def draw(size: int):
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QBrush, QColor, QImage, QLinearGradient, QPainter, QPainterPath, QPen

    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 512.0
    p.scale(s, s)
    # background: a soft rounded square
    gradient = QLinearGradient(0, 0, 0, 512)
    gradient.setColorAt(0, QColor("#f4f8ef"))
    gradient.setColorAt(1, QColor("#dcebd2"))
    p.setPen(QPen(QColor("#9fbf92"), 6))
    p.setBrush(QBrush(gradient))
    p.drawRoundedRect(QRectF(16, 16, 480, 480), 104, 104)
    # the stem
    stem = QPainterPath(QPointF(250, 440))
    stem.cubicTo(QPointF(240, 350), QPointF(268, 250), QPointF(296, 140))
    p.setPen(QPen(QColor("#3f6b3a"), 22, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawPath(stem)

    def leaf(x: float, y: float, length: float, angle: float, colour: str) -> None:
        p.save()
        p.translate(x, y)
        p.rotate(angle)
        path = QPainterPath(QPointF(0, 0))
        path.cubicTo(QPointF(length * 0.3, -length * 0.42), QPointF(length * 0.8, -length * 0.36), QPointF(length, 0))
        path.cubicTo(QPointF(length * 0.8, length * 0.36), QPointF(length * 0.3, length * 0.42), QPointF(0, 0))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(colour))
        p.drawPath(path)
        p.setPen(QPen(QColor(255, 255, 255, 110), 6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.drawLine(QPointF(length * 0.12, 0), QPointF(length * 0.82, 0))
        p.restore()

    leaf(250, 380, 145, -150, "#5f9a4f")
    leaf(254, 318, 150, -28, "#74b05f")
    leaf(266, 250, 130, -150, "#6aa957")
    leaf(280, 196, 120, -38, "#86c06d")
    leaf(296, 142, 92, -80, "#9ccc7f")
    p.end()
    return image


def png_bytes(image) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


def write_ico(path: Path, pngs: dict[int, bytes]) -> None:
    """An ICO holding PNG images (Windows Vista and later read these)."""
    sizes = [s for s in (16, 32, 48, 256) if s in pngs]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        blob = pngs[size]
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset + len(blobs))
        blobs += blob
    path.write_bytes(header + entries + blobs)


def write_icns(path: Path, pngs: dict[int, bytes]) -> None:
    """An ICNS with PNG members: ic07 128, ic08 256, ic09 512, ic10 1024 (512@2x)."""
    body = b""
    for kind, size in ((b"ic07", 128), (b"ic08", 256), (b"ic09", 512), (b"ic10", 1024)):
        blob = pngs[size]
        body += kind + struct.pack(">I", 8 + len(blob)) + blob
    path.write_bytes(b"icns" + struct.pack(">I", 8 + len(body)) + body)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - needed for painting
    ASSETS.mkdir(exist_ok=True)
    pngs = {size: png_bytes(draw(size)) for size in SIZES}
    (ASSETS / "sprig.png").write_bytes(pngs[512])
    for size in (16, 24, 32, 48, 64, 128, 256, 512):  # Briefcase and the hicolor theme
        (ASSETS / f"sprig-{size}.png").write_bytes(pngs[size])
    write_ico(ASSETS / "sprig.ico", pngs)
    write_icns(ASSETS / "sprig.icns", pngs)
    print(f"wrote icons to {ASSETS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
