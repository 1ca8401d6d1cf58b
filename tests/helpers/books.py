"""EPUB books written at test time, the way EPUB 3 lays them out.

``write_epub`` produces a complete book: the uncompressed ``mimetype`` first, then
META-INF/container.xml naming the package file, the package (OPF) with its manifest and
spine, an EPUB 3 navigation document, an EPUB 2 NCX, a cover page holding only an image,
and the chapters as XHTML. Keyword arguments bend it into the damaged and hostile variants
the tests need.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

XHTML_NS = "http://www.w3.org/1999/xhtml"

# a 1x1 PNG, the cover image
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

CONTAINER = b"""<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="%s" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""


@dataclass(frozen=True)
class Chapter:
    file: str  # name inside the book's Text/ folder, e.g. "ch01.xhtml"
    title: str
    body: str  # XHTML body content


def chapter_xhtml(title: str, body: str, doctype: str = "<!DOCTYPE html>") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f"{doctype}\n"
        f'<html xmlns="{XHTML_NS}" xmlns:epub="http://www.idpf.org/2007/ops" xml:lang="en" lang="en">\n'
        f"<head>\n<title>{title}</title>\n"
        '<link href="../Styles/book.css" rel="stylesheet" type="text/css"/>\n</head>\n'
        f'<body>\n<section epub:type="chapter">\n{body}\n</section>\n</body>\n</html>\n'
    ).encode()


def write_epub(
    path: Path,
    chapters: list[Chapter],
    *,
    title: str = "Workshop notes",
    spine_order: list[str] | None = None,
    package_path: str = "OEBPS/content.opf",
    with_container: bool = True,
    hrefs: dict[str, str] | None = None,
    extra_parts: dict[str, bytes] | None = None,
    replace_parts: dict[str, bytes] | None = None,
    encrypted: list[str] | None = None,
) -> Path:
    """Write a book. ``spine_order`` lists chapter files in reading order (default: as given);
    ``hrefs`` overrides the manifest href of a chapter file; ``replace_parts`` swaps the bytes
    of any part by its archive name; ``encrypted`` lists archive names marked as DRM-encrypted."""
    base = package_path.rsplit("/", 1)[0] + "/" if "/" in package_path else ""
    hrefs = hrefs or {}
    order = spine_order or [c.file for c in chapters]
    ids = {c.file: f"ch{i:02d}" for i, c in enumerate(chapters, 1)}

    manifest = [
        '<item id="nav" href="Text/nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>',
        '<item id="css" href="Styles/book.css" media-type="text/css"/>',
        '<item id="cover-image" href="Images/cover.png" media-type="image/png" properties="cover-image"/>',
        '<item id="cover" href="Text/cover.xhtml" media-type="application/xhtml+xml"/>',
    ]
    for chapter in chapters:
        href = hrefs.get(chapter.file, "Text/" + chapter.file.replace(" ", "%20"))
        manifest.append(f'<item id="{ids[chapter.file]}" href="{href}" media-type="application/xhtml+xml"/>')
    spine = ['<itemref idref="cover" linear="yes"/>'] + [f'<itemref idref="{ids[f]}"/>' for f in order]
    package = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid">\n'
        '  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        '    <dc:identifier id="uid">urn:uuid:5b1f0c2e-8c57-4c57-9f35-4a5d2b9e7a10</dc:identifier>\n'
        f"    <dc:title>{title}</dc:title>\n    <dc:language>en</dc:language>\n"
        '    <meta property="dcterms:modified">2024-05-01T10:00:00Z</meta>\n'
        "  </metadata>\n"
        "  <manifest>\n    " + "\n    ".join(manifest) + "\n  </manifest>\n"
        '  <spine toc="ncx">\n    ' + "\n    ".join(spine) + "\n  </spine>\n</package>\n"
    ).encode()

    nav_items = "".join(f'<li><a href="{c.file.replace(" ", "%20")}">{c.title}</a></li>' for c in chapters)
    nav = chapter_xhtml("Contents", f'<nav epub:type="toc" id="toc"><h1>Contents</h1><ol>{nav_items}</ol></nav>')
    ncx_points = "".join(
        f'<navPoint id="p{i}" playOrder="{i}"><navLabel><text>{c.title}</text></navLabel>'
        f'<content src="Text/{c.file.replace(" ", "%20")}"/></navPoint>'
        for i, c in enumerate(chapters, 1)
    )
    ncx = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><head>'
        '<meta name="dtb:uid" content="urn:uuid:5b1f0c2e-8c57-4c57-9f35-4a5d2b9e7a10"/></head>'
        f"<docTitle><text>{title}</text></docTitle><navMap>{ncx_points}</navMap></ncx>\n"
    ).encode()
    cover = chapter_xhtml("Cover", '<div class="cover"><img src="../Images/cover.png" alt=""/></div>')

    parts: dict[str, bytes] = {
        f"{base}Text/nav.xhtml": nav,
        f"{base}toc.ncx": ncx,
        f"{base}Styles/book.css": b"body { font-family: serif; } h1 { text-align: center; }\n",
        f"{base}Images/cover.png": PNG_1X1,
        f"{base}Text/cover.xhtml": cover,
        package_path: package,
    }
    for chapter in chapters:
        parts[f"{base}Text/{chapter.file}"] = chapter_xhtml(chapter.title, chapter.body)
    if with_container:
        parts["META-INF/container.xml"] = CONTAINER % package_path.encode()
    if encrypted:
        refs = "".join(
            '<enc:EncryptedData><enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
            f'<enc:CipherData><enc:CipherReference URI="{name}"/></enc:CipherData></enc:EncryptedData>'
            for name in encrypted
        )
        parts["META-INF/encryption.xml"] = (
            '<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            f'xmlns:enc="http://www.w3.org/2001/04/xmlenc#">{refs}</encryption>'
        ).encode()
    parts.update(extra_parts or {})
    parts.update(replace_parts or {})

    with zipfile.ZipFile(path, "w") as archive:
        # the mimetype comes first and is stored, so tools can sniff the format
        archive.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, data in parts.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


BOLTS = Chapter(
    "ch01.xhtml",
    "Wheel bolts",
    "<h1>Chapter 1. Wheel bolts</h1>\n"
    "<p>Tighten the <strong>M12</strong> wheel bolts to <em>110&#160;N·m</em> with a "
    '<a href="ch%2003.xhtml#wrench">calibrated wrench</a>, in a star pattern.</p>\n'
    "<p>Re-check them after the first 50 km.</p>",
)
BRAKES = Chapter(
    "ch02.xhtml",
    "Brake pads",
    "<h1>Chapter 2. Brake pads</h1>\n"
    "<p>Replace the brake pads when the lining is thinner than <code>3 mm</code>.</p>\n"
    "<table><tr><th>Axle</th><th>Minimum lining</th></tr>"
    "<tr><td>Front</td><td>3 mm</td></tr><tr><td>Rear</td><td>2 mm</td></tr></table>\n"
    "<ul><li>Clean the caliper guides.</li><li>Grease the pins with <em>silicone</em> grease.</li></ul>",
)
WRENCH = Chapter(
    "ch 03.xhtml",  # a file name with a space: its href is percent-encoded
    "The torque wrench",
    '<h1 id="wrench">Chapter 3. The torque wrench</h1>\n'
    "<p>A click-type torque wrench drifts out of calibration after about 5000 cycles; "
    "send it for calibration every year.</p>",
)


def text_bomb_chapter(megabytes: int) -> bytes:
    """A chapter of ``megabytes`` MB that deflates a thousandfold."""
    paragraph = b"<p>" + b"A" * 1000 + b"</p>\n"
    body = paragraph * (megabytes * 1024 * 1024 // len(paragraph))
    return chapter_xhtml("Bomb", "").replace(b"\n</section>", body + b"</section>")


def understate_size(path: Path, name: str, factor: int = 1000) -> None:
    """Rewrite the central directory so ``name`` declares ``factor`` times fewer bytes than it
    inflates to (a zip bomb that lies; the archive must not need zip64)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    declared = max(1024, info.file_size // factor)
    encoded = name.encode()
    offset = 0
    while True:
        central = data.find(b"PK\x01\x02", offset)
        if central < 0:
            raise AssertionError(f"central directory entry for {name} not found")
        name_len = int.from_bytes(data[central + 28 : central + 30], "little")
        if bytes(data[central + 46 : central + 46 + name_len]) == encoded:
            break
        offset = central + 4
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))


BILLION_LAUGHS_DOCTYPE = (
    '<!DOCTYPE html [<!ENTITY a "' + "ha" * 500 + '">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">'
    '<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>'
)
