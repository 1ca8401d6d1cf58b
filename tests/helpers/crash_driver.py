"""Run a real window in this process, ask a question, and kill the process mid-answer.

Used by test_persistence: ``python crash_driver.py DATA_DIR QUESTION``. The data folder
already holds an index and a settings file that names the model to load.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from pathlib import Path

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.config import Paths, Settings, enforce_offline
    from desktop.ui.window import MainWindow

    enforce_offline()
    root, question = Path(sys.argv[1]), sys.argv[2]
    app = QApplication([])
    paths = Paths(root)
    window = MainWindow(paths, Settings.load(paths.settings), startup_jobs=False, watch=False)
    window.show()

    # crash (kill -9) right after the streaming answer was first saved with some text in it
    store = window.chats
    real_add, real_update = store.add_message, store.update_message

    def crash_if_partial(message) -> None:
        if message.role == "assistant" and message.meta.get("partial") and message.content.strip():
            print("SAVED " + message.content.replace("\n", " "), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def add_message(conversation_id, message):
        saved = real_add(conversation_id, message)
        crash_if_partial(saved)
        return saved

    def update_message(message) -> None:
        real_update(message)
        crash_if_partial(message)

    store.add_message, store.update_message = add_message, update_message
    window.chat.ask(question, "default")
    QTimer.singleShot(120_000, app.quit)  # never hang a test run
    app.exec()


if __name__ == "__main__":
    main()
