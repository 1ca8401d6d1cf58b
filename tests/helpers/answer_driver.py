"""Run the real window offscreen: index one folder, ask one question, print the answer, quit.

Used by test_privacy (under strace): ``python answer_driver.py DATA_DIR FOLDER QUESTION``. The
data folder already holds the built embedder and the model its settings name.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from pathlib import Path

    from PySide6.QtWidgets import QApplication

    from desktop.config import Paths, Settings
    from desktop.ui.window import MainWindow

    root, folder, question = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    app = QApplication([])
    paths = Paths(root)
    window = MainWindow(paths, Settings.load(paths.settings), watch=False)
    window.show()

    def wait(condition, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            app.processEvents()
            time.sleep(0.02)
        return True

    window.add_paths([folder])
    if not wait(lambda: window.engine.state in ("ready", "failed"), 300) or window.engine.state == "failed":
        print("MODEL", window.engine.state, flush=True)
        return 1
    if not wait(lambda: not window.indexing.busy and not window.indexing.queue, 300):
        print("INDEXING did not finish", flush=True)
        return 1
    finals = []
    window.chat.answer_finished.connect(lambda _key, message: finals.append(message))
    window.chat.ask(question, "default")
    if not wait(lambda: bool(finals) and not window.chat.busy, 300):
        print("NO ANSWER", flush=True)
        return 1
    print("ANSWER", finals[-1].content.replace("\n", " "), flush=True)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
