"""Put Sprig in the application menu: an XDG desktop entry and its icons, per user.

``sprig-desktop --install-desktop-entry`` writes

* ``$XDG_DATA_HOME/applications/sprig.desktop`` (``~/.local/share`` when unset), whose
  ``Exec`` and ``TryExec`` name this install's launcher by its absolute path, so the entry
  works from a virtual environment that is not on ``PATH``;
* the icon into the hicolor theme: ``icons/hicolor/<n>x<n>/apps/sprig.png`` and
  ``icons/hicolor/scalable/apps/sprig.svg``.

``MimeType`` lists only the formats Sprig reads as documents, so it never offers itself as
the handler for every text or web page. ``--uninstall-desktop-entry`` removes the same
files. No Qt here: this runs before (and without) the window.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

ENTRY_ID = "sprig"  # matches QGuiApplication.setDesktopFileName in desktop.app
LAUNCHER = "sprig-desktop"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
MARKER = "# Written by sprig-desktop --install-desktop-entry; remove with --uninstall-desktop-entry"
# the document formats Sprig opens, by file suffix; plain text, CSV and HTML are indexed
# too but are not claimed: Sprig is not the application for every text file or web page
DOCUMENT_MIME_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".epub": "application/epub+zip",
    ".md": "text/markdown",
}


class DesktopEntryError(Exception):
    """The entry cannot be written or removed; the message names the path and the reason."""


@dataclass
class EntryReport:
    installed: bool
    desktop_file: Path
    files: list[Path] = field(default_factory=list)  # written, or removed
    command: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    kept: str = ""  # a file left in place, and why

    def describe(self) -> str:
        if self.installed:
            lines = [f"Added Sprig to the application menu: {self.desktop_file}",
                     f"  starts: {' '.join(self.command)}",
                     f"  icons: {len(self.files) - 1} in {_hicolor(self.desktop_file.parents[1])}"]
        elif self.files:
            lines = [f"Removed Sprig from the application menu ({len(self.files)} files)."]
        else:
            lines = ["Sprig was not in the application menu; nothing to remove."]
        if self.kept:
            lines.append(f"  kept: {self.kept}")
        if self.refreshed:
            lines.append(f"  refreshed: {', '.join(self.refreshed)}")
        return "\n".join(lines)


# ------------------------------------------------------------------ where things go
def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset, empty or relative (XDG spec)."""
    if sys.platform in ("win32", "darwin"):
        raise DesktopEntryError("the application menu entry is for Linux (and other XDG) desktops; "
                                "on Windows and macOS, build the app with Briefcase instead")
    value = os.environ.get("XDG_DATA_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".local" / "share"


def _hicolor(base: Path) -> Path:
    return base / "icons" / "hicolor"


def _targets(base: Path) -> tuple[Path, list[tuple[Path, Path]]]:
    """(the desktop file, [(icon source, icon target)]) under the data folder ``base``."""
    assets = asset_dir()
    icons = [(assets / f"sprig-{n}.png", _hicolor(base) / f"{n}x{n}" / "apps" / f"{ENTRY_ID}.png")
             for n in PNG_SIZES]
    icons.append((assets / "sprig.svg", _hicolor(base) / "scalable" / "apps" / f"{ENTRY_ID}.svg"))
    return base / "applications" / f"{ENTRY_ID}.desktop", icons


def asset_dir() -> Path:
    """Sprig's icons and desktop entry template, shipped inside the package."""
    return Path(str(resources.files("desktop") / "assets"))


def launcher_command() -> list[str]:
    """The absolute command that starts this install's window.

    The ``sprig-desktop`` script that is running now, else the one installed beside this
    interpreter (a virtual environment's ``bin``, or the user scheme's), else this
    interpreter with ``-m desktop``. Paths are made absolute but symbolic links are kept:
    a virtual environment's ``python`` must not be resolved to the base interpreter.
    """
    name = LAUNCHER + (".exe" if os.name == "nt" else "")
    candidates = []
    if sys.argv and Path(sys.argv[0]).name == name:
        candidates.append(Path(sys.argv[0]))
    candidates.append(Path(sysconfig.get_path("scripts")) / name)
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(Path(sysconfig.get_path("scripts", user_scheme)) / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [os.path.abspath(candidate)]
    return [os.path.abspath(sys.executable), "-m", "desktop"]


def document_mime_types() -> list[str]:
    """MIME types of the document formats the loaders read (see desktop.rag.loaders)."""
    from desktop.rag.loaders import SUPPORTED_SUFFIXES

    return [mime for suffix, mime in DOCUMENT_MIME_TYPES.items() if suffix in SUPPORTED_SUFFIXES]


# ------------------------------------------------------------------ the entry's text
_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


def quote_exec_arg(arg: str) -> str:
    """One argument of an ``Exec`` line, quoted as the Desktop Entry spec says.

    Arguments with reserved characters go in double quotes, with ``"`` `` ` `` ``$`` and
    ``\\`` escaped by a backslash; a literal ``%`` is written ``%%``.
    """
    if "\n" in arg or "\r" in arg:
        raise DesktopEntryError(f"the path {arg!r} contains a line break; a menu entry cannot start it")
    arg = arg.replace("%", "%%")
    if arg and not (_RESERVED & set(arg)):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def escape_string_value(value: str) -> str:
    """A value of type string: backslash escapes (applied after Exec quoting, per the spec)."""
    out = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return "\\s" + out[1:] if out.startswith(" ") else out


def render_entry(command: list[str], mime_types: list[str]) -> str:
    template = (asset_dir() / "sprig.desktop.in").read_text(encoding="utf-8")
    # GLib looks the program up before it turns "%%" back into "%", so a launcher whose
    # path holds a "%" is started through env, whose arguments are expanded as they should be
    program = ["env"] if "%" in command[0] else []
    exec_line = " ".join(quote_exec_arg(a) for a in [*program, *command])
    text = (template.replace("@EXEC@", escape_string_value(exec_line))
            .replace("@TRYEXEC@", escape_string_value(command[0]))
            .replace("@MIMETYPE@", "".join(f"{m};" for m in mime_types)))
    return f"{MARKER}\n{text}"


# ------------------------------------------------------------------ install / uninstall
def install_entry(base: Path | None = None, command: list[str] | None = None) -> EntryReport:
    """Write the desktop entry and icons under ``base`` (default: the XDG data folder)."""
    base = Path(base) if base is not None else data_home()
    command = command or launcher_command()
    if not Path(command[0]).is_file():
        raise DesktopEntryError(f"the launcher {command[0]} does not exist")
    desktop_file, icons = _targets(base)
    if desktop_file.exists() and not _is_ours(desktop_file):
        raise DesktopEntryError(f"{desktop_file} exists and was not written by sprig-desktop; "
                                "move it away first")
    text = render_entry(command, document_mime_types())
    written = []
    for source, target in icons:
        if not source.is_file():
            raise DesktopEntryError(f"the icon {source} is missing from this install (reinstall Sprig)")
        _write(target, source.read_bytes())
        written.append(target)
    _write(desktop_file, text.encode("utf-8"))
    written.append(desktop_file)
    return EntryReport(True, desktop_file, written, command, _refresh(base))


def uninstall_entry(base: Path | None = None) -> EntryReport:
    """Remove what ``install_entry`` wrote under ``base``; a foreign ``sprig.desktop`` is kept."""
    base = Path(base) if base is not None else data_home()
    desktop_file, icons = _targets(base)
    removed, kept = [], ""
    if desktop_file.exists():
        if not _is_ours(desktop_file):
            kept = f"{desktop_file} (not written by sprig-desktop)"
        elif _remove(desktop_file):
            removed.append(desktop_file)
    removed += [target for _source, target in icons if _remove(target)]
    return EntryReport(False, desktop_file, removed, kept=kept,
                       refreshed=_refresh(base) if removed else [])


def _is_ours(desktop_file: Path) -> bool:
    try:
        with open(desktop_file, encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\n") == MARKER
    except OSError as exc:
        raise DesktopEntryError(f"cannot read {desktop_file}: {exc.strerror or exc}") from exc


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DesktopEntryError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DesktopEntryError(f"cannot remove {path}: {exc.strerror or exc}") from exc


def _refresh(base: Path) -> list[str]:
    """Tell menus and icon themes about the change; every tool here is optional.

    The icon cache is updated only where one exists already: a new cache in a user's
    hicolor folder would go stale when another program adds icons without updating it.
    Changing the folder's time is what makes icon themes look again.
    """
    done = []
    applications = base / "applications"
    tool = shutil.which("update-desktop-database")
    if tool and applications.is_dir() and _run([tool, "-q", str(applications)]):
        done.append("update-desktop-database")
    hicolor = _hicolor(base)
    if hicolor.is_dir():
        try:
            os.utime(hicolor)
        except OSError:
            pass
        tool = shutil.which("gtk-update-icon-cache")
        if tool and (hicolor / "icon-theme.cache").exists() and _run(
                [tool, "-q", "-t", "-f", str(hicolor)]):
            done.append("gtk-update-icon-cache")
    return done


def _run(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
