"""Text from files and file names, made safe to print or draw.

A file name may hold terminal escape sequences, newlines or bidirectional overrides
("invoice\u202eexe.pdf" shows as "invoicefdp.exe"). Wherever Sprig prints or draws such
text, control and bidi-override characters are shown escaped (``\\x1b``, ``\\u202e``),
never interpreted. ``--json`` output stays exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control and bidi-override characters written as escapes."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", str(text))


def display_name(path: str) -> str:
    """A file's name (or the path, if it has none), safe to show."""
    return printable(Path(path).name or str(path))
