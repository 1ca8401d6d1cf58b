"""Plain-language messages for failures; tracebacks go to the log file, never to the window."""

from __future__ import annotations

import logging
import sys
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path

log = logging.getLogger("desktop")


def user_message(exc: BaseException) -> str:
    """What to tell the user about ``exc``: the core's own message, or a short generic one."""
    from desktop.errors import SprigError

    if isinstance(exc, SprigError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "Sprig ran out of memory."
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"Unexpected error ({type(exc).__name__}{': ' + text if text else ''})."


def setup_logging(folder: Path) -> Path:
    """Log to ``folder/sprig.log`` (rotated); warnings also go to stderr."""
    path = Path(folder) / "sprig.log"
    root = logging.getLogger()
    if not any(isinstance(h, RotatingFileHandler) for h in root.handlers):
        try:
            handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2, encoding="utf-8")
        except OSError:
            handler = None
        if handler is not None:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
        root.setLevel(logging.INFO)
    return path


def install_excepthook(log_path: Path) -> None:
    """An uncaught exception is logged and shown as one plain sentence, and the app goes on."""

    def show(exc: BaseException) -> None:
        from PySide6.QtCore import QThread, QTimer
        from PySide6.QtWidgets import QApplication, QMessageBox

        app = QApplication.instance()
        if app is None:
            return

        def box() -> None:
            QMessageBox.warning(
                app.activeWindow(), "Sprig",
                f"{user_message(exc)}\n\nDetails were written to {log_path}.",
            )

        if QThread.currentThread() is app.thread():
            box()
        else:
            QTimer.singleShot(0, app, box)

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.error("uncaught exception", exc_info=(exc_type, exc, tb))
        try:
            show(exc)
        except Exception:  # noqa: BLE001 - never raise from the hook
            pass

    def thread_hook(args) -> None:
        if args.exc_type is SystemExit:
            return
        log.error("uncaught exception in thread %s", args.thread, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = hook
    threading.excepthook = thread_hook
