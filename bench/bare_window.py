"""The cold-start baseline: a bare PySide6 window, timed the way Sprig's window is
(at its first Paint event), then closed. ``python bench/bare_window.py REPORT.json``."""

import json
import sys
import time
from pathlib import Path


def main() -> int:
    out = Path(sys.argv[1])
    from PySide6.QtCore import QEvent, QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    class Window(QMainWindow):
        painted = False

        def event(self, event) -> bool:
            if not self.painted and event.type() == QEvent.Type.Paint:
                self.painted = True
                out.write_text(json.dumps({"painted_at": time.time()}), encoding="utf-8")
                QTimer.singleShot(0, self.close)
            return super().event(event)

    app = QApplication(sys.argv[:1])
    window = Window()
    window.setWindowTitle("bare")
    window.resize(1100, 720)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
