"""Start the window: ``sprig-desktop [FILE|FOLDER ...]`` or ``python -m desktop``.

Order matters: the single-instance lock in the data folder is taken before any store is
opened; a second launch hands its files to the running one and exits. Qt is imported
only after that, and the heavy libraries only after the window has painted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HEAVY_MODULES = ("torch", "chromadb", "llama_cpp", "sentence_transformers", "transformers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sprig-desktop", description="Chat with your own documents, offline.")
    parser.add_argument("paths", nargs="*", help="files or folders to index")
    parser.add_argument("--data-dir", help="the data folder (default: $SPRIG_HOME or the user data folder)")
    # for measurements and screenshots
    parser.add_argument("--startup-report", help=argparse.SUPPRESS)
    parser.add_argument("--quit-after-paint", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-auto-load", action="store_true", help=argparse.SUPPRESS)
    # ignore the arguments some launchers add (e.g. macOS -psn_...)
    args, _unknown = parser.parse_known_args(argv)
    return args


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up included)."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from desktop.config import Paths, enforce_offline

    enforce_offline()
    paths = Paths(Path(args.data_dir).expanduser().absolute()) if args.data_dir else Paths.default()
    paths.root.mkdir(parents=True, exist_ok=True)

    from desktop.ui.instance import SingleInstance

    instance = SingleInstance(paths.root, paths.lock)
    if not instance.acquire():
        if instance.lock_problem():
            print(f"Cannot use the data folder {paths.root}: {instance.lock_problem()}.", file=sys.stderr)
            return 1
        files = [str(Path(p).absolute()) for p in args.paths]
        if instance.hand_off(files):
            sent = f"; sent {len(files)} item{'s' if len(files) != 1 else ''} to it" if files else ""
            print(f"Sprig is already running for {paths.root}{sent}.")
            return 0
        print(f"Sprig is already running for {paths.root} ({instance.owner()}), but did not answer. "
              "Close it first, or use another data folder.", file=sys.stderr)
        return 1
    from desktop.config import record_native_crashes

    record_native_crashes(paths)
    try:
        return _run(args, paths, instance)
    finally:
        instance.release()


def _run(args: argparse.Namespace, paths, instance) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication

    from desktop import APP_NAME, __version__
    from desktop.ui.errors import install_excepthook, setup_logging

    QApplication.setApplicationName(APP_NAME)
    QApplication.setApplicationVersion(__version__)
    QApplication.setOrganizationName(APP_NAME)
    QGuiApplication.setDesktopFileName("sprig")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    icon = icon_path()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))
    instance.listen()
    install_excepthook(setup_logging(paths.root))

    from desktop.config import Settings
    from desktop.ui.window import MainWindow

    if not catalog_usable(paths):
        return 1
    settings = Settings.load(paths.settings)
    window = MainWindow(paths, settings, auto_load=False if args.no_auto_load else None)
    instance.received.connect(window.open_paths)

    def painted(_when: float) -> None:
        report = {
            "seconds_since_process_start": process_age_s(),
            "painted_at": time.time(),
            "heavy_modules_loaded": [m for m in HEAVY_MODULES if m in sys.modules],
        }
        if args.startup_report:
            Path(args.startup_report).write_text(json.dumps(report), encoding="utf-8")
        if args.quit_after_paint:
            QTimer.singleShot(0, window.close)  # not from inside the paint event

    window.first_painted.connect(painted)
    quit_on_signals(app, window.close)
    window.show()
    if args.paths:
        window.open_paths([Path(p) for p in args.paths])
    return app.exec()


def catalog_usable(paths) -> bool:
    """Open the catalog before the window does: offer a repair if it is damaged, and say
    plainly when the data folder cannot be written (that is never treated as damage)."""
    from PySide6.QtWidgets import QMessageBox

    from desktop.errors import CatalogDamaged, StoreError
    from desktop.rag.catalog import Catalog

    try:
        Catalog(paths.catalog).close()
        return True
    except CatalogDamaged as exc:
        answer = QMessageBox.question(
            None, "Sprig", f"{exc}\n\nRepair it now? The damaged file is kept beside it.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        from desktop.rag.health import repair_catalog

        try:
            repair_catalog(paths)
        except StoreError as again:
            QMessageBox.critical(None, "Sprig", str(again))
            return False
        return True
    except StoreError as exc:
        QMessageBox.critical(None, "Sprig", str(exc))
        return False


def quit_on_signals(app, close) -> None:
    """SIGTERM (logout, shutdown, ``kill``) and SIGINT quit like Ctrl+Q: answers saved, stores closed.

    Python runs signal handlers only between bytecodes, which Qt's event loop never reaches
    while idle, so the signal wakes a socket that a QSocketNotifier watches.
    """
    import signal
    import socket

    from PySide6.QtCore import QSocketNotifier, QTimer

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, app)

    def woken() -> None:
        try:
            reader.recv(64)
        except OSError:
            pass

    notifier.activated.connect(woken)
    requested = []

    def handler(signum, _frame) -> None:
        if not requested:
            requested.append(signum)
            QTimer.singleShot(0, close)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    app._signal_sockets = (reader, writer, notifier)  # kept alive with the app


def icon_path() -> Path | None:
    """The app icon from the checkout's or the bundle's assets folder."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "assets" / "sprig.png", here / "assets" / "sprig.png"):
        if candidate.is_file():
            return candidate
    return None


if __name__ == "__main__":
    sys.exit(main())
