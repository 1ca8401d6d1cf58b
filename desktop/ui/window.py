"""The main window: chats, documents, the chat itself and the source viewer.

It paints before any heavy library is imported: the catalog and the chat store are
plain SQLite files, and the vector store, the embedder and the chat model load lazily on
workers once the window is on screen. The window wires controllers to views; the views
only turn user input into controller calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import fields
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
)

from desktop.config import Paths, Settings
from desktop.display import display_name
from desktop.files import is_under
from desktop.rag.types import Source
from desktop.ui.chat import ChatView
from desktop.ui.chats import ChatsPanel
from desktop.ui.conversation import ChatController
from desktop.ui.dnd import carries_files, local_paths
from desktop.ui.documents import DocumentsPanel
from desktop.ui.engine import EngineController, needs_assembly
from desktop.ui.indexing import IndexingController
from desktop.ui.theme import PaletteFollower
from desktop.ui.viewer import SourceViewer
from desktop.ui.watcher import FolderWatcher
from desktop.ui.workers import await_workers

log = logging.getLogger(__name__)

SHORTCUTS = [
    ("Enter", "Send the question"),
    ("Shift+Enter", "New line in the question"),
    ("Esc", "Stop the answer (or close the source)"),
    ("Ctrl+N", "New chat"),
    ("F2", "Rename the chat"),
    ("Ctrl+O", "Add files"),
    ("Ctrl+Shift+O", "Add a folder (kept in sync)"),
    ("Ctrl+E", "Export the chat as Markdown"),
    ("Delete", "Remove the selected documents / chat"),
    ("Ctrl+L", "Go to the question box"),
    ("Ctrl+W", "Close the source viewer"),
    ("Ctrl+,", "Settings"),
    ("Ctrl+Q", "Quit"),
]


def parse_splitter_sizes(text: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``"side,chat/chats,documents"`` as numbers; None for anything else."""
    try:
        panes = tuple(tuple(int(n) for n in part.split(",")) for part in text.split("/"))
    except ValueError:
        return None
    if len(panes) != 2 or any(len(p) != 2 or min(p) < 0 or sum(p) == 0 for p in panes):
        return None
    return panes  # type: ignore[return-value]


class MainWindow(QMainWindow):
    first_painted = Signal(float)  # time.perf_counter() of the first paint

    def __init__(self, paths: Paths, settings: Settings | None = None, *, library=None, chats=None,
                 engine=None, engine_loader=None, auto_load: bool | None = None,
                 startup_jobs: bool = True, watch: bool = True):
        super().__init__()
        self.paths = paths
        self.settings = settings or Settings.load(paths.settings)
        self._owns_library = library is None
        self._owns_chats = chats is None
        if library is None:
            from desktop.rag.library import Library

            library = Library(paths, self.settings)  # the catalog opens now; Chroma and torch later
        if chats is None:
            from desktop.chats import ChatStore

            chats = ChatStore(paths.chats)
        self.library = library
        self.chats = chats
        self._auto_load = self.settings.auto_load_model if auto_load is None else auto_load
        self._startup_jobs = startup_jobs
        self._watch = watch
        self._painted = False
        self._closed = False
        self.summaries: list = []  # SummaryDialog windows (desktop.ui.summary)

        self.setWindowTitle("Sprig")
        self.resize(1320, 840)
        self.setAcceptDrops(True)
        self.theme = PaletteFollower(self)  # colours from the palette, light or dark

        self.indexing = IndexingController(library, self)
        self.engine = EngineController(library, self.settings, paths, engine=engine, loader=engine_loader, parent=self)
        self.chat = ChatController(chats, self.engine, self.settings, self)
        self.watcher = FolderWatcher(library, self)

        collection = self.settings.last_collection or "default"
        self.documents = DocumentsPanel(library, self.indexing, collection)
        self.chats_panel = ChatsPanel(self.chat, self.new_chat)
        self.chat_view = ChatView(self.chat)
        self.chat_view.collection_provider = lambda: self.documents.collection
        self.chat_view.set_scope(collection)
        self.viewer = SourceViewer(ocr_dir=str(self.paths.ocr))
        self.viewer.hide()

        self.side_splitter = left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.chats_panel)
        left.addWidget(self.documents)
        left.setStretchFactor(0, 2)
        left.setStretchFactor(1, 3)
        left.setSizes([300, 500])
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.chat_view)
        self.splitter.addWidget(self.viewer)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([360, 960, 0])
        self.setCentralWidget(self.splitter)
        self._restore_layout()

        self._build_status_bar()
        self._build_menus()
        self._wire()
        self._restore()
        if self.settings.problems:
            # a hand-edited settings file was corrected on load: say so, the original is kept aside
            log.warning("settings corrected on load: %s", "; ".join(self.settings.problems))
            self.statusBar().showMessage("Settings: " + "; ".join(self.settings.problems), 30000)

    # ------------------------------------------------------------ construction
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_status = QLabel()
        self.index_status = QLabel()
        self.index_bar = QProgressBar()
        self.index_bar.setRange(0, 1000)
        self.index_bar.setMaximumWidth(140)
        self.index_bar.setMaximumHeight(12)
        self.index_bar.setTextVisible(False)
        self.index_bar.hide()
        bar.addPermanentWidget(self.index_status)
        bar.addPermanentWidget(self.index_bar)
        bar.addPermanentWidget(self.model_status)
        if self.engine.engine is None and needs_assembly(self.settings, self.paths):
            self._on_engine_state("unloaded", "First launch: the bundled model will be prepared")
        else:
            self._on_engine_state(self.engine.state, self.engine.message)

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None) -> QAction:
            act = menu.addAction(text)
            act.triggered.connect(slot)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            return act

        file_menu = self.menuBar().addMenu("&File")
        action(file_menu, "Add &files…", self.documents.ask_add_files, QKeySequence.StandardKey.Open)
        action(file_menu, "Add f&older…", self.documents.ask_add_folder, "Ctrl+Shift+O")
        file_menu.addSeparator()
        self.export_action = action(file_menu, "&Export chat…", lambda: self.export_chat(), "Ctrl+E")
        file_menu.addSeparator()
        action(file_menu, "&Settings…", self.open_settings, "Ctrl+,")
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, "Ctrl+Q")

        chat_menu = self.menuBar().addMenu("&Chat")
        action(chat_menu, "&New chat", self.new_chat, QKeySequence.StandardKey.New)
        action(chat_menu, "&Rename chat…", self.chats_panel.rename_current, "F2")
        action(chat_menu, "&Delete chat…", self.chats_panel.delete_current)
        chat_menu.addSeparator()
        self.stop_action = action(chat_menu, "&Stop answer", self.escape, "Esc")
        action(chat_menu, "Go to the &question box", lambda: self.chat_view.input.setFocus(), "Ctrl+L")
        action(chat_menu, "Close the source &viewer", self.viewer.close_viewer, "Ctrl+W")
        chat_menu.addSeparator()
        self.summarize_action = action(chat_menu, "Summari&ze the selected document…", self.summarize_selected)
        self.task_action = action(chat_menu, "&List from the whole selected document…", self.ask_whole_document)
        action(chat_menu, "Summarize the whole &collection…", lambda: self.summarize(None))

        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, QKeySequence.StandardKey.HelpContents)
        action(help_menu, "&About Sprig", self.show_about)

    def _say_search_note(self, *_args) -> None:
        """A shared library whose server is down answered by keyword only: say so."""
        note = getattr(self.library, "search_note", "")
        if note:
            self.statusBar().showMessage(note, 20000)

    def _wire(self) -> None:
        self.documents.add_requested.connect(self.add_paths)
        self.documents.remove_requested.connect(self.remove_documents)
        self.documents.cancel_requested.connect(self.indexing.cancel)
        self.documents.collection_changed.connect(self._on_collection_changed)
        self.documents.collection_created.connect(self.library.catalog.ensure_collection)
        self.documents.collection_deleted.connect(self._delete_collection)
        self.documents.summarize_requested.connect(self.summarize)
        self.documents.summarize_collection_requested.connect(lambda name: self.summarize(None, name))
        self.chat_view.source_clicked.connect(self.open_source)
        self.chat_view.files_dropped.connect(self.add_paths)
        self.chat_view.input.escape_pressed.connect(self.escape)
        self.viewer.closed.connect(self._fold_viewer)
        self.chat.conversation_opened.connect(self._on_conversation_opened)
        self.chat.answer_finished.connect(self._say_search_note)
        self.engine.state_changed.connect(self._on_engine_state)
        self.indexing.state_changed.connect(self._update_index_status)
        self.indexing.progress.connect(lambda _p: self._update_index_status())
        self.indexing.job_finished.connect(self._on_index_finished)
        self.indexing.job_failed.connect(self._on_index_failed)
        self.indexing.folders_changed.connect(self.watcher.refresh)
        self.watcher.changed.connect(self.indexing.sync)

    def _restore_layout(self) -> None:
        """Size, place and pane sizes as they were when the window last closed."""
        self._side_width: int | None = None  # the side pane's width while the source viewer is open
        if self.settings.window_geometry:
            from PySide6.QtCore import QByteArray

            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode("ascii")))
        sizes = parse_splitter_sizes(self.settings.splitter_sizes)
        if sizes is not None:
            (side, chat), (chats, documents) = sizes
            self.splitter.setSizes([side, chat, 0])
            self.side_splitter.setSizes([chats, documents])

    def _remember_layout(self) -> None:
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        side, chat, viewer = self.splitter.sizes()
        chats, documents = self.side_splitter.sizes()
        self.settings.splitter_sizes = f"{side},{chat + viewer}/{chats},{documents}"

    def _fold_viewer(self) -> None:
        sizes = self.splitter.sizes()
        side = sizes[0] if self._side_width is None else self._side_width
        self.splitter.setSizes([side, sum(sizes) - side, 0])

    def _restore(self) -> None:
        conversations = self.chat.conversations()
        if conversations:
            self.chat.open(conversations[0].id)

    # ------------------------------------------------------------ start-up
    def event(self, event) -> bool:
        if not self._painted and event.type() == QEvent.Type.Paint:
            self._painted = True
            self.first_painted.emit(time.perf_counter())
            QTimer.singleShot(0, self._after_first_paint)
        return super().event(event)

    def _after_first_paint(self) -> None:
        """Now the heavy parts may load, on workers: recovery and folder sync, the model."""
        if self._closed:
            return
        if self._startup_jobs:
            self.indexing.startup()
        if self._watch:
            self.watcher.start()
        if self._auto_load and self.engine.engine is None:
            from desktop.models.probe import auto_load_allowed

            allowed, reason = auto_load_allowed(self.paths)
            if allowed:
                self.engine.load()
            else:  # no crash loop: the model loads when the user asks a question
                self.engine.hold(reason)

    # ------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if carries_files(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if carries_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.add_paths(paths)

    # ------------------------------------------------------------ actions
    def add_paths(self, paths: list) -> None:
        """Index files and folders (dropped, picked, or handed over by a second launch)."""
        paths = [Path(p) for p in paths]
        missing = [p for p in paths if not p.exists()]
        for p in missing:
            self.statusBar().showMessage(f"Not found: {p}", 8000)
        paths = [p for p in paths if p.exists()]
        if paths:
            self.indexing.add(paths, self.documents.collection)
            self.statusBar().showMessage(
                f"Added {len(paths)} item{'s' if len(paths) != 1 else ''} to “{self.documents.collection}”", 4000)

    def open_paths(self, paths: list) -> None:
        """A second launch handed these over: come to the front and index them."""
        self.setWindowState((self.windowState() & ~Qt.WindowState.WindowMinimized) | Qt.WindowState.WindowActive)
        self.show()
        self.raise_()
        self.activateWindow()
        if paths:
            self.add_paths(paths)

    def remove_documents(self, paths: list[str]) -> None:
        """Remove documents; one inside a linked folder would come back at the next sync, so
        offer to unlink the folder instead."""
        collection = self.documents.collection
        folders = [folder for _c, folder in self.library.catalog.folders(collection)]
        linked = sorted({f for f in folders for p in paths if is_under(p, f)})
        if linked:
            names = "\n".join(linked)
            answer = QMessageBox.question(
                self, "Remove documents",
                f"Some of these files are inside a linked folder, which Sprig keeps in sync:\n{names}\n\n"
                "Unlink the folder? All its documents leave the index; the files on disk are not touched.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            paths = [p for p in paths if not any(is_under(p, f) for f in linked)]
            paths += linked
        self.indexing.remove(paths, collection)

    def new_chat(self) -> None:
        self.chat.new_chat(self.documents.collection)
        self.chat_view.input.setFocus()

    def escape(self) -> None:
        if self.chat.busy:
            self.chat.stop()
        elif self.viewer.isVisible():
            self.viewer.close_viewer()

    def open_source(self, source: Source) -> None:
        if not self.viewer.isVisible() or self.splitter.sizes()[2] == 0:
            self.viewer.show()
            sizes = self.splitter.sizes()
            side, total = sizes[0], sum(sizes)  # the side pane keeps the width the user gave it
            self._side_width = side  # (and gets it back when the viewer closes)
            self.splitter.setSizes([side, max(420, total - side - 520), 520])
        self.viewer.open_source(source)

    def summarize(self, path: str | None, collection: str | None = None, task: str = ""):
        """Read a whole indexed document (or, without ``path``, the collection) and show its
        points as they are made, each citing its pages (desktop.ui.summary)."""
        from desktop.ui.summary import SummaryDialog

        collection = collection or self.documents.collection
        for old in [d for d in self.summaries if not d.running and d.worker is None and not d.isVisible()]:
            self.summaries.remove(old)
            old.deleteLater()
        dialog = SummaryDialog(self.library.catalog, self.engine, path, collection, task, parent=self)
        dialog.source_clicked.connect(self.open_source)
        self.summaries.append(dialog)
        dialog.show()
        dialog.start()
        return dialog

    def _selected_document(self) -> str | None:
        rows = [self.documents.model.row_for(p) for p in self.documents.selected_paths()]
        indexed = [r for r in rows if r is not None and r.status == "indexed"]
        if not indexed:
            self.statusBar().showMessage("Select an indexed document first", 6000)
            return None
        return indexed[0].path

    def summarize_selected(self) -> None:
        path = self._selected_document()
        if path is not None:
            self.summarize(path)

    def ask_whole_document(self) -> None:
        """A task over every page of the selected document: "list every deadline"..."""
        from PySide6.QtWidgets import QInputDialog

        path = self._selected_document()
        if path is None:
            return
        task, ok = QInputDialog.getText(self, "The whole document",
                                        f"What should Sprig pull out of every page of {display_name(path)}?\n"
                                        "For example: list every deadline · what does it say about pensions")
        if ok and task.strip():
            self.summarize(path, task=" ".join(task.split()))

    def export_chat(self, target: str | os.PathLike | None = None) -> Path | None:
        """Save the open chat as Markdown, every citation with its file, page and quote (Ctrl+E)."""
        from desktop.export import chat_markdown

        current = self.chat.current
        conv = self.chats.load(current.id) if current is not None else None
        if conv is None or not conv.messages:
            self.statusBar().showMessage("Nothing to export: this chat has no messages yet", 6000)
            return None
        if self.chat.busy and self.chat.pending.conversation_id == conv.id:
            self.statusBar().showMessage("The answer is still being written: export when it is done "
                                         "(or stop it)", 6000)
            return None
        if target is None:
            name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', " ", conv.title).strip()[:80] or "chat"
            chosen, _ = QFileDialog.getSaveFileName(self, "Export chat", str(Path.home() / f"{name}.md"),
                                                    "Markdown (*.md);;All files (*)")
            if not chosen:
                return None
            target = Path(chosen) if Path(chosen).suffix else Path(chosen).with_suffix(".md")
        path = Path(target)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(chat_markdown(conv), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self.statusBar().showMessage(f"Could not export the chat to {path}: {exc.strerror or exc}", 12000)
            return None
        self.statusBar().showMessage(f"Chat exported to {path}", 6000)
        return path

    def open_settings(self) -> None:
        from desktop.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self.documents.collection, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: Settings) -> None:
        """Save new settings (atomically) and apply them; a model change reloads the model."""
        old = self.settings
        reload = (new.model, new.context_size, new.model_endpoint) != (old.model, old.context_size, old.model_endpoint)
        for f in fields(Settings):  # in place: the controllers share this object
            setattr(old, f.name, getattr(new, f.name))
        self._save_settings()
        self.engine.apply_settings(old)
        if reload and (self.engine.engine is not None or self.engine.loading):
            self.engine.reload()
        self.statusBar().showMessage("Settings saved", 3000)

    def _save_settings(self) -> None:
        try:
            self.settings.save(self.paths.settings)
        except OSError as exc:
            self.statusBar().showMessage(f"Could not save the settings: {exc.strerror}", 8000)

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")

    def show_about(self) -> None:
        from desktop import __version__

        QMessageBox.about(self, "About Sprig",
                          f"Sprig {__version__}\nChat with your own documents, offline.\n\nData: {self.paths.root}")

    # ------------------------------------------------------------ reactions
    def _on_collection_changed(self, name: str) -> None:
        self.chat_view.set_scope(name)
        if self.settings.last_collection != name:
            self.settings.last_collection = name
            self._save_settings()

    def _on_conversation_opened(self, conversation) -> None:
        if conversation is not None and conversation.collection != self.documents.collection:
            self.documents.set_collection(conversation.collection)

    def _delete_collection(self, name: str) -> None:
        self.indexing.delete_collection(name)
        remaining = [c for c in self.library.collections() if c != name]
        self.documents.set_collection(remaining[0] if remaining else "default")

    def _on_engine_state(self, state: str, message: str) -> None:
        mark = {"ready": "●", "failed": "⚠", "loading": "◌", "assembling": "◌"}.get(state, "○")
        self.model_status.setText(f"{mark} {message}")
        self.model_status.setToolTip(message)

    def _update_index_status(self) -> None:
        request = self.indexing.current
        if request is None:
            self.index_status.setText("")
            self.index_bar.hide()
            return
        p = self.indexing.last_progress
        if p is not None and p.stage == "prepare":
            self.index_status.setText(p.message[:1].upper() + p.message[1:])
        else:
            self.index_status.setText(f"{request.label}" + (f" ({p.file_index}/{p.file_count})"
                                                            if p and p.file_count else ""))
        self.index_bar.show()
        self.index_bar.setValue(int((p.fraction if p and p.stage != "scan" else 0.0) * 1000))

    def _on_index_finished(self, request, summary) -> None:
        parts = []
        if summary.indexed:
            parts.append(f"Indexed {len(summary.indexed)} file{'s' if len(summary.indexed) != 1 else ''} "
                         f"({summary.pages} pages, {summary.chunks} chunks)")
        if summary.removed:
            parts.append(f"removed {len(summary.removed)}")
        if summary.failed:
            first_path, first_reason = next(iter(summary.failed.items()))
            more = f" and {len(summary.failed) - 1} more" if len(summary.failed) > 1 else ""
            parts.append(f"{display_name(first_path)} failed: {first_reason}{more}")
        if summary.cancelled:
            parts.append("cancelled")
        if parts:
            self.statusBar().showMessage("; ".join(parts), 10000)

    def _on_index_failed(self, request, message: str) -> None:
        self.statusBar().showMessage(f"{request.label} failed: {message}", 12000)

    # ------------------------------------------------------------ closing
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop every worker cleanly, save what is in flight, close the stores we opened."""
        if self._closed:
            return
        self._closed = True
        if self._painted:
            self._remember_layout()
        self.watcher.stop()
        self.documents.close_panel()
        for dialog in self.summaries:  # before the model closes under them
            dialog.shutdown(10.0)
        self.chat.shutdown(10.0)
        self.indexing.shutdown(30.0)
        self.engine.shutdown(60.0)
        if not await_workers(10.0):
            log.warning("some background jobs did not stop in time")
        self._save_settings()
        if self._owns_chats:
            self.chats.close()
        if self._owns_library:
            self.library.close()
