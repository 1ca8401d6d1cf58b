"""Screenshot of the real window, and the launch-to-first-paint time, under an X server.

    xvfb-run -a -s "-screen 0 1440x900x24" .venv/bin/python tools/screenshot.py shot docs/screenshot-light.png
    xvfb-run -a -s "-screen 0 1440x900x24" .venv/bin/python tools/screenshot.py shot docs/screenshot-dark.png \
        --palette dark
    xvfb-run -a -s "-screen 0 1440x900x24" .venv/bin/python tools/screenshot.py startup --runs 7

``shot`` starts the window on a fresh temporary data folder (so it is a first launch: the
bundled Qwen model is assembled), indexes real documents from the shared evaluation set,
asks a question with the bundled model, opens the first source, and grabs the whole
screen with ImageMagick's ``import -window root``. ``--palette dark`` gives the application
a dark palette before the window opens, as a dark desktop theme does. ``startup`` launches
``python -m desktop`` several times and reports the time from process start to the
window's first paint, and whether any heavy library was imported by then.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("EVALDATA", REPO.parent / "shared" / "eval"))
ARTICLES = EVAL / "squad_v1.1_dev" / "derived" / "articles"
PDFS = EVAL / "pdfs" / "py-pdf-sample-files"
DOCUMENTS = [
    ARTICLES / "002_Normans.txt",
    ARTICLES / "001_Warsaw.txt",
    ARTICLES / "007_Southern_California.txt",
    PDFS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf",
    PDFS / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf",
]
QUESTION = "Who was the Norman leader who conquered England in 1066?"


def wait(app, condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def dark_palette():
    """A dark palette like those of dark desktop themes (Xvfb has no desktop theme of its own)."""
    from PySide6.QtGui import QColor, QPalette

    palette = QPalette()
    for role, color in {
        "Window": "#2d2d2d", "WindowText": "#e6e6e6", "Base": "#1e1e1e", "AlternateBase": "#262626",
        "Text": "#e6e6e6", "Button": "#353535", "ButtonText": "#e6e6e6", "BrightText": "#ff5555",
        "Highlight": "#3d7ac0", "HighlightedText": "#ffffff", "Link": "#6ea6e8", "LinkVisited": "#a889d8",
        "Mid": "#444444", "Dark": "#191919", "Light": "#505050", "Shadow": "#000000",
        "PlaceholderText": "#8a8a8a", "ToolTipBase": "#2d2d2d", "ToolTipText": "#e6e6e6",
    }.items():
        palette.setColor(getattr(QPalette.ColorRole, role), QColor(color))
    return palette


def settle(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def grab(out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["import", "-window", "root", str(out)], check=True)
    print(f"wrote {out}")


def shot(out: Path, question: str, palette: str = "light") -> None:
    sys.path.insert(0, str(REPO))
    home = Path(tempfile.mkdtemp(prefix="sprig-shot-"))
    os.environ["SPRIG_HOME"] = str(home)
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QIcon
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from desktop.app import icon_path
    from desktop.config import Paths, Settings, enforce_offline
    from desktop.ui.window import MainWindow

    enforce_offline()
    QApplication.setApplicationName("Sprig")
    app = QApplication(sys.argv[:1])
    app.setWindowIcon(QIcon(str(icon_path())))
    if palette == "dark":
        app.setStyle("Fusion")  # a style that draws with the palette's colours
        app.setPalette(dark_palette())
    paths = Paths(home)
    window = MainWindow(paths, Settings.load(paths.settings))
    window.setGeometry(0, 0, 1440, 900)
    window.show()
    window.add_paths([p for p in DOCUMENTS if p.exists()])
    wait(app, lambda: window.engine.state in ("ready", "failed"), 600, "the model")
    if window.engine.state == "failed":
        raise SystemExit(window.engine.message)
    wait(app, lambda: not window.indexing.busy and not window.indexing.queue, 900, "indexing")
    finals = []
    window.chat.answer_finished.connect(lambda _key, message: finals.append(message))
    window.chat_view.input.setFocus()
    QTest.keyClicks(window.chat_view.input, question)
    QTest.keyClick(window.chat_view.input, Qt.Key.Key_Return)
    wait(app, lambda: bool(finals) and not window.chat.busy, 600, "the answer")
    message = finals[-1]
    print("answer:", message.content)
    print("sources:", [(c["path"], c["page"], c["n"]) for c in message.meta.get("citations", [])])
    citations = message.meta.get("citations") or []
    if citations:
        window.open_source(citations[0])
        wait(app, lambda: window.viewer.highlight is not None or window.viewer.highlighted_result is not None,
             60, "the source viewer")
    window.documents.list.clearSelection()
    window.chat_view.input.setFocus()
    settle(app, 1.5)
    grab(out)
    window.close()


def startup(runs: int) -> None:
    results = []
    for i in range(runs):
        home = Path(tempfile.mkdtemp(prefix="sprig-start-"))
        report = home / "startup.json"
        started = time.time()
        subprocess.run(
            [sys.executable, "-m", "desktop", "--data-dir", str(home), "--startup-report", str(report),
             "--quit-after-paint"],
            cwd=REPO, check=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        data = json.loads(report.read_text())
        data["since_launch_s"] = data["painted_at"] - started
        results.append(data)
        print(f"run {i + 1}: {data['since_launch_s']:.2f} s from launch to first paint "
              f"({data['seconds_since_process_start']:.2f} s since process start); "
              f"heavy modules loaded: {data['heavy_modules_loaded'] or 'none'}")
    launch = [r["since_launch_s"] for r in results]
    print(f"median {statistics.median(launch):.2f} s, min {min(launch):.2f} s, max {max(launch):.2f} s "
          f"over {runs} runs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("shot")
    p.add_argument("out", type=Path)
    p.add_argument("--question", default=QUESTION)
    p.add_argument("--palette", choices=["light", "dark"], default="light",
                   help="light: the platform's own palette; dark: a dark palette like a dark desktop theme's")
    p = sub.add_parser("startup")
    p.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if args.command == "shot":
        shot(args.out, args.question, args.palette)
    else:
        startup(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
