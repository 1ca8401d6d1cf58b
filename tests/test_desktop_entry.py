"""The application-menu entry: written by the real launcher into a temp XDG data folder."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop.desktop_entry import (
    ENTRY_ID,
    PNG_SIZES,
    DesktopEntryError,
    install_entry,
    uninstall_entry,
)
from desktop.rag.loaders import SUPPORTED_SUFFIXES

LAUNCHER = Path(sys.executable).parent / "sprig-desktop"
DOCUMENT_TYPES = {
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/epub+zip": ".epub",
    "text/markdown": ".md",
}


def run_launcher(*args: str, xdg: Path, **kwargs) -> subprocess.CompletedProcess:
    if not LAUNCHER.is_file():
        pytest.fail(f"{LAUNCHER} is missing: install Sprig with pip install -e . first")
    env = dict(os.environ, XDG_DATA_HOME=str(xdg), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([str(LAUNCHER), *args], env=env, capture_output=True, text=True,
                          timeout=120, **kwargs)


def read_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return dict(parser["Desktop Entry"])


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def installed(tmp_path):
    xdg = tmp_path / "xdg-data"
    result = run_launcher("--install-desktop-entry", xdg=xdg)
    assert result.returncode == 0, result.stderr
    return xdg, result


def test_the_entry_starts_this_install_by_its_absolute_path(installed):
    xdg, result = installed
    desktop_file = xdg / "applications" / f"{ENTRY_ID}.desktop"
    entry = read_entry(desktop_file)
    program, *rest = entry["Exec"].split(" ")
    assert Path(program).is_absolute() and Path(program).is_file() and os.access(program, os.X_OK)
    assert Path(program) == LAUNCHER  # the launcher of this virtual environment, not one on PATH
    assert rest == ["%F"]
    assert entry["TryExec"] == program
    assert str(desktop_file) in result.stdout and program in result.stdout
    assert entry["Type"] == "Application" and entry["Name"] == "Sprig"
    assert entry["Terminal"] == "false"


def test_mime_types_are_the_document_formats_sprig_reads(installed):
    xdg, _ = installed
    claimed = [m for m in read_entry(xdg / "applications" / "sprig.desktop")["MimeType"].split(";") if m]
    assert set(claimed) == {m for m, suffix in DOCUMENT_TYPES.items() if suffix in SUPPORTED_SUFFIXES}
    assert "application/pdf" in claimed
    assert not {"text/plain", "text/html", "text/csv"} & set(claimed)
    # update-desktop-database saw them: Sprig is offered for PDFs in this data folder
    cache = (xdg / "applications" / "mimeinfo.cache")
    if shutil.which("update-desktop-database"):
        assert "application/pdf=sprig.desktop;" in cache.read_text(encoding="utf-8")


def test_icons_are_in_the_hicolor_theme(installed):
    xdg, _ = installed
    entry = read_entry(xdg / "applications" / "sprig.desktop")
    assert entry["Icon"] == ENTRY_ID  # a theme name, found in the hicolor folders below
    hicolor = xdg / "icons" / "hicolor"
    for size in PNG_SIZES:
        png = hicolor / f"{size}x{size}" / "apps" / f"{ENTRY_ID}.png"
        assert png_size(png) == (size, size)
    svg = hicolor / "scalable" / "apps" / f"{ENTRY_ID}.svg"
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_the_entry_is_valid_for_desktop_file_validate(installed):
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate is not installed (apt-get install desktop-file-utils)")
    xdg, _ = installed
    result = subprocess.run([validator, str(xdg / "applications" / "sprig.desktop")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_uninstall_removes_everything_install_wrote(tmp_path):
    xdg = tmp_path / "xdg-data"
    (xdg / "applications").mkdir(parents=True)
    other = xdg / "applications" / "other.desktop"
    other.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=/bin/true\n")
    before = all_files(xdg)
    assert run_launcher("--install-desktop-entry", xdg=xdg).returncode == 0
    written = all_files(xdg) - before
    assert len(written) >= len(PNG_SIZES) + 2
    result = run_launcher("--uninstall-desktop-entry", xdg=xdg)
    assert result.returncode == 0, result.stderr
    assert "Removed Sprig from the application menu" in result.stdout
    left = all_files(xdg) - before
    # update-desktop-database keeps its own index of the folder; it no longer names Sprig
    assert {p.name for p in left} <= {"mimeinfo.cache"}
    for path in left:
        assert "sprig" not in path.read_text(encoding="utf-8")
    assert other.is_file()
    again = run_launcher("--uninstall-desktop-entry", xdg=xdg)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_a_menu_entry_of_another_program_is_never_overwritten_or_removed(tmp_path):
    foreign = tmp_path / "applications" / "sprig.desktop"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("[Desktop Entry]\nType=Application\nName=Sprig (other)\nExec=/bin/true\n")
    with pytest.raises(DesktopEntryError) as info:
        install_entry(tmp_path)
    assert str(foreign) in str(info.value) and "not written by sprig-desktop" in str(info.value)
    report = uninstall_entry(tmp_path)
    assert foreign.is_file() and "not written by sprig-desktop" in report.describe()


def test_exec_survives_awkward_paths_when_a_desktop_launches_it(tmp_path):
    """gio (GLib, as GNOME and most menus use) parses Exec and starts the program with a file."""
    gio = shutil.which("gio")
    if gio is None:
        pytest.skip("gio is not installed (apt-get install libglib2.0-bin)")
    folder = tmp_path / 'odd "dir" $HOME `x` 100% \\ (1)'
    folder.mkdir()
    record = tmp_path / "argv.txt"
    fake = folder / "sprig-desktop"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > '{record}'\n")
    fake.chmod(0o755)
    document = tmp_path / "my notes; v2.md"
    document.write_text("# notes\n")
    report = install_entry(tmp_path / "xdg", command=[str(fake)])
    entry = read_entry(report.desktop_file)
    assert entry["TryExec"].replace("\\\\", "\\") == str(fake)
    validator = shutil.which("desktop-file-validate")
    if validator:
        assert subprocess.run([validator, str(report.desktop_file)]).returncode == 0
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    subprocess.run([gio, "launch", str(report.desktop_file), str(document)], env=env, check=True,
                   timeout=30, capture_output=True)
    deadline = time.monotonic() + 20
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert record.read_text().splitlines() == [str(fake), str(document)]


def test_the_entry_s_command_opens_the_window(installed, tmp_path, sprig_home):
    """What a click on the menu entry runs starts Sprig (offscreen, closed after its first paint)."""
    xdg, _ = installed
    program = read_entry(xdg / "applications" / "sprig.desktop")["Exec"].split(" ")[0]
    report = tmp_path / "startup.json"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [program, "--data-dir", str(sprig_home), "--no-auto-load", "--quit-after-paint",
         "--startup-report", str(report)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(report.read_text())["painted_at"] > 0


def test_help_lists_the_menu_options(tmp_path):
    result = run_launcher("--help", xdg=tmp_path / "xdg")
    assert result.returncode == 0
    assert "--data-dir" in result.stdout  # the window's own options
    assert "--install-desktop-entry" in result.stdout and "--uninstall-desktop-entry" in result.stdout
    assert not (tmp_path / "xdg").exists()

