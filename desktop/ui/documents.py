"""The documents panel: collections, their documents with status, add, remove, progress.

``DocumentListModel`` is a thin Qt model over plain ``DocRow`` values, built from the
catalog's documents, the files still waiting in the indexing lane, and the progress of
the file being indexed now. The panel only turns clicks into controller calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.display import display_name
from desktop.rag.loaders import SUPPORTED_SUFFIXES
from desktop.rag.types import Progress
from desktop.ui.health_view import HealthBadge
from desktop.ui.theme import Colors
from desktop.ui.workers import LatestRead

FILE_FILTER = (
    "Documents (" + " ".join(f"*{s}" for s in sorted(SUPPORTED_SUFFIXES)) + ");;All files (*)"
)
ACTIVE_STAGES = ("parse", "embed", "store")
VECTOR_STAGES = ("store", "embed")  # a local library: the chunks are committed, vectors follow


@dataclass(frozen=True)
class DocRow:
    path: str
    status: str  # queued | indexing | embedding (keyword search only so far) | indexed | failed
    pages: int = 0
    chunks: int = 0
    reason: str = ""
    fraction: float | None = None  # indexing progress of this file
    added_by: str = ""  # a shared library: who added it

    @property
    def name(self) -> str:
        return display_name(self.path) or self.path

    @property
    def detail(self) -> str:
        if self.status == "indexed":
            pages = f"{self.pages} page{'s' if self.pages != 1 else ''}"
            by = f" · added by {self.added_by}" if self.added_by else ""
            return f"Indexed · {pages} · {self.chunks} chunk{'s' if self.chunks != 1 else ''}{by}"
        if self.status == "failed":
            return f"Failed: {self.reason or 'unknown reason'}"
        if self.status == "indexing":
            return "Indexing…" if self.fraction is None else f"Indexing… {int(self.fraction * 100)}%"
        if self.status == "embedding":
            return f"Keyword search only · embedding {int((self.fraction or 0.0) * 100)}%"
        return "Queued"

    @property
    def tooltip(self) -> str:
        if self.status == "embedding":
            return (f"{self.path}\n{self.detail}\nQuestions find it by its words already; search by "
                    "meaning joins in as its passages are embedded.")
        return f"{self.path}\n{self.detail}"


def build_rows(documents, waiting: list[str], progress: Progress | None) -> list[DocRow]:
    """Rows for one collection: catalog documents, then files not in the catalog yet."""
    rows: list[DocRow] = []
    known = set()
    for doc in documents:
        known.add(doc.path)
        status, fraction = doc.status, None
        if progress is not None and progress.path == doc.path and progress.stage in ACTIVE_STAGES:
            status = _active_status(status, progress.stage)
            fraction = progress.chunks_done / progress.chunks if progress.chunks else 0.0
        elif status == "embedding":
            fraction = doc.embedded  # chunks committed, vectors under way (or left for the next run)
        elif status == "indexing":
            fraction = 1.0  # the write phase
        rows.append(DocRow(doc.path, status, doc.pages, doc.chunks, doc.reason or "", fraction,
                           doc.added_by or ""))
    for path in waiting:
        if path not in known:
            known.add(path)
            rows.append(DocRow(path, "queued"))
    return rows


def _active_status(status: str, stage: str) -> str:
    """The row's status while its file is worked on: ``embedding`` once its chunks are committed
    (searchable by keyword while its vectors are written), else ``indexing``."""
    return "embedding" if status == "embedding" and stage in VECTOR_STAGES else "indexing"


def read_catalog(library, collection: str):
    """(collection names, documents of ``collection``); runs on a worker."""
    return library.collections(), library.documents(collection)


class DocumentListModel(QAbstractListModel):
    StatusRole = Qt.ItemDataRole.UserRole + 1
    DetailRole = Qt.ItemDataRole.UserRole + 2
    FractionRole = Qt.ItemDataRole.UserRole + 3
    PathRole = Qt.ItemDataRole.UserRole + 4
    RowRole = Qt.ItemDataRole.UserRole + 5

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[DocRow] = []

    def rowCount(self, parent: QModelIndex | None = None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.tooltip
        if role == self.StatusRole:
            return row.status
        if role == self.DetailRole:
            return row.detail
        if role == self.FractionRole:
            return row.fraction
        if role == self.PathRole:
            return row.path
        if role == self.RowRole:
            return row
        return None

    def set_rows(self, rows: list[DocRow]) -> None:
        if [r.path for r in rows] == [r.path for r in self.rows]:
            changed = [i for i, (a, b) in enumerate(zip(self.rows, rows, strict=True)) if a != b]
            self.rows = rows
            if changed:
                self.dataChanged.emit(self.index(min(changed)), self.index(max(changed)))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_for(self, path: str) -> DocRow | None:
        return next((r for r in self.rows if r.path == path), None)


class DocumentDelegate(QStyledItemDelegate):
    """Two lines per document: the name, then its status (with a bar while it indexes).

    The status is drawn in the palette's success, error or muted colour, each fitted to the
    list's background (``desktop.ui.theme``), so it stays readable in a dark palette too."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._colors: tuple[int, Colors] | None = None  # (palette's cache key, its colours)

    def colors(self, palette: QPalette) -> Colors:
        key = palette.cacheKey()
        if self._colors is None or self._colors[0] != key:
            self._colors = (key, Colors.from_palette(palette))
        return self._colors[1]

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt override
        line = option.fontMetrics.height()
        return QSize(200, 2 * line + 14)

    def paint(self, painter, option, index) -> None:
        row: DocRow = index.data(DocumentListModel.RowRole)
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, option.widget)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        rect = option.rect.adjusted(8, 4, -8, -4)
        line = option.fontMetrics.height()
        painter.save()
        bold = QFont(option.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(text_color)
        name_rect = QRect(rect.left(), rect.top(), rect.width(), line)
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         painter.fontMetrics().elidedText(row.name, Qt.TextElideMode.ElideMiddle, rect.width()))
        painter.setFont(option.font)
        detail_rect = QRect(rect.left(), rect.top() + line + 2, rect.width(), line)
        if row.status in ("indexing", "embedding"):
            bar_width = min(120, rect.width() // 3)
            bar = QStyleOptionProgressBar()
            bar.rect = QRect(detail_rect.right() - bar_width, detail_rect.top() + 2, bar_width, line - 4)
            bar.minimum, bar.maximum = 0, 100
            bar.progress = int((row.fraction or 0.0) * 100)
            bar.textVisible = False
            bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
            style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
            detail_rect.setRight(bar.rect.left() - 6)
        if not selected:
            c = self.colors(palette)
            painter.setPen({"failed": c.error, "indexed": c.success}.get(row.status, c.muted))
        painter.drawText(detail_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         option.fontMetrics.elidedText(row.detail, Qt.TextElideMode.ElideRight, detail_rect.width()))
        painter.restore()


class DocumentsPanel(QWidget):
    """Collections and their documents. Emits requests; the window routes them to the lane."""

    add_requested = Signal(list)  # paths (files or folders)
    remove_requested = Signal(list)  # document paths
    collection_changed = Signal(str)
    collection_created = Signal(str)
    collection_deleted = Signal(str)
    cancel_requested = Signal()
    summarize_requested = Signal(str)  # an indexed document's path
    summarize_collection_requested = Signal(str)  # a collection's name

    def __init__(self, library, indexing, collection: str = "default", parent=None):
        super().__init__(parent)
        self.library = library
        self.indexing = indexing
        self._collection = collection
        self.model = DocumentListModel(self)
        self._closed = False

        title = QLabel("Documents")
        title.setObjectName("panelTitle")
        self.collections = QComboBox()
        self.collections.setToolTip("Collection: the set of documents a chat answers from")
        self.collections.setMinimumContentsLength(10)
        self.collections.activated.connect(self._on_collection_picked)
        self.collection_menu = QToolButton()
        self.collection_menu.setText("⋯")
        self.collection_menu.setToolTip("Collection actions")
        self.collection_menu.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.collection_menu)
        menu.addAction("New collection…", self.ask_new_collection)
        menu.addAction("Delete this collection…", self.ask_delete_collection)
        menu.addAction("Summarize this collection…",
                       lambda: self.summarize_collection_requested.emit(self._collection))
        self.collection_menu.setMenu(menu)
        self.health = HealthBadge(library, indexing, collection, self)  # search health (desktop.ui.health_view)
        self.collection_changed.connect(self.health.set_collection)
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(self.health)
        header.addWidget(self.collections)
        header.addWidget(self.collection_menu)

        self.list = QListView()
        self.list.setModel(self.model)
        self.list.setItemDelegate(DocumentDelegate(self.list))
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setUniformItemSizes(True)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.selectionModel().selectionChanged.connect(self._update_buttons)
        QShortcut(QKeySequence.StandardKey.Delete, self.list, self.remove_selected,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self.empty_hint = QLabel("Drop files or folders anywhere on the window,\nor use Add files… / Add folder….")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setObjectName("hint")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_hint)
        self.stack.addWidget(self.list)

        self.add_files_button = QPushButton("Add files…")
        self.add_files_button.setToolTip("Add files to this collection (Ctrl+O)")
        self.add_files_button.clicked.connect(self.ask_add_files)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("Link a folder: its files are indexed and kept in sync (Ctrl+Shift+O)")
        self.add_folder_button.clicked.connect(self.ask_add_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected documents from the index (Delete)")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_files_button)
        buttons.addWidget(self.add_folder_button)
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)

        self.progress_label = QLabel()
        self.progress_label.setObjectName("hint")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(10)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing (documents already indexed stay)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_box = QWidget()
        box = QVBoxLayout(self.progress_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.progress_label)
        box.addLayout(progress_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(header)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.progress_box)
        layout.addLayout(buttons)

        self._refresh_timer = QTimer(self, singleShot=True, interval=150)
        self._refresh_timer.timeout.connect(self.refresh)
        indexing.documents_changed.connect(self.schedule_refresh)
        indexing.progress.connect(self._on_progress)
        indexing.state_changed.connect(self._update_progress)
        self._reader = LatestRead(read_catalog, lambda: (self.library, self._collection),
                                  lambda args, result: self._show(args[1], *result), name="read-documents")
        # the first read is direct: nothing else uses the catalog before the window shows
        self._show(collection, *read_catalog(library, collection))
        self._update_progress()

    # ------------------------------------------------------------ collections
    @property
    def collection(self) -> str:
        return self._collection

    def reload_collections(self) -> None:
        self.schedule_refresh()

    def _show_collections(self, names: list[str]) -> None:
        if self._collection not in names:
            names = sorted({*names, self._collection})
        if names == [self.collections.itemText(i) for i in range(self.collections.count())]:
            return
        self.collections.blockSignals(True)
        self.collections.clear()
        self.collections.addItems(names)
        self.collections.setCurrentText(self._collection)
        self.collections.blockSignals(False)

    def set_collection(self, name: str) -> None:
        if name == self._collection:
            return
        self._collection = name
        names = [self.collections.itemText(i) for i in range(self.collections.count())]
        self._show_collections(names)
        self.collections.setCurrentText(name)
        self.model.set_rows([])
        self.refresh()
        self.collection_changed.emit(name)

    def _on_collection_picked(self, index: int) -> None:
        self.set_collection(self.collections.itemText(index))

    def ask_new_collection(self) -> None:
        name, ok = QInputDialog.getText(self, "New collection", "Name of the new collection:")
        name = name.strip()
        if ok and name:
            self.collection_created.emit(name)
            self.set_collection(name)

    def ask_delete_collection(self) -> None:
        name = self._collection
        answer = QMessageBox.question(
            self, "Delete collection",
            f"Delete the collection “{name}” and its index? Your files on disk are not touched.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.collection_deleted.emit(name)

    # ------------------------------------------------------------ documents
    def schedule_refresh(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def close_panel(self) -> None:
        """The window is closing (the library may close next): stop reading it."""
        self._closed = True
        self._refresh_timer.stop()
        self.health.shutdown()

    def refresh(self) -> None:
        """Re-read the catalog on a worker (an indexing job may hold it for a moment), then show it."""
        if not self._closed:
            self._reader.request()

    def _show(self, collection: str, names: list[str], docs) -> None:
        if self._closed or collection != self._collection:
            return
        self._show_collections(names)
        selected = set(self.selected_paths())
        progress = self.indexing.last_progress if self.indexing.busy else None
        rows = build_rows(docs, self.indexing.waiting_paths(self._collection), progress)
        self.model.set_rows(rows)
        if selected:
            selection = self.list.selectionModel()
            for i, row in enumerate(self.model.rows):
                if row.path in selected:
                    selection.select(self.model.index(i), selection.SelectionFlag.Select)
        self.stack.setCurrentWidget(self.list if rows else self.empty_hint)
        self._update_buttons()

    def _on_progress(self, p: Progress) -> None:
        # the file being indexed: update its bar in place without re-reading the catalog
        if p.stage in ACTIVE_STAGES:
            for i, row in enumerate(self.model.rows):
                if row.path == p.path:
                    fraction = p.chunks_done / p.chunks if p.chunks else 0.0
                    rows = list(self.model.rows)
                    rows[i] = DocRow(row.path, _active_status(row.status, p.stage), row.pages, row.chunks,
                                     row.reason, fraction, row.added_by)
                    self.model.set_rows(rows)
                    break
            else:
                self.schedule_refresh()
        self._update_progress()

    def _update_progress(self) -> None:
        request = self.indexing.current
        self.progress_box.setVisible(request is not None)
        if request is None:
            return
        p = self.indexing.last_progress
        waiting = len(self.indexing.queue)
        more = f" (+{waiting} waiting)" if waiting else ""
        if self.indexing.cancelling:
            self.progress_label.setText("Cancelling…")
        elif p is None or p.stage == "scan" and p.file_count == 0:
            self.progress_label.setText(f"{request.label}…{more}")
        else:
            verb = {"scan": "Checking", "parse": "Reading", "embed": "Indexing", "store": "Saving",
                    "done": "Indexed", "fail": "Failed", "rebuild": "Rebuilding"}.get(p.stage, p.stage)
            name = display_name(p.path) if p.path else ""
            self.progress_label.setText(f"{verb} {p.file_index}/{p.file_count}: {name}{more}")
        fraction = p.fraction if p is not None and p.stage != "scan" else 0.0
        self.progress_bar.setValue(int(fraction * 1000))
        self.progress_bar.setRange(0, 0 if p is None or p.stage == "scan" else 1000)
        self.cancel_button.setEnabled(request.kind in ("index", "sync", "startup") and not self.indexing.cancelling)

    def selected_paths(self) -> list[str]:
        return [self.model.rows[i.row()].path for i in self.list.selectionModel().selectedRows()
                if i.row() < len(self.model.rows)]

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(bool(self.selected_paths()))

    def remove_selected(self) -> None:
        paths = self.selected_paths()
        if paths:
            self.remove_requested.emit(paths)

    def _context_menu(self, pos) -> None:
        index = self.list.indexAt(pos)
        if not index.isValid():
            return
        self.context_menu(index).exec(self.list.viewport().mapToGlobal(pos))

    def context_menu(self, index) -> QMenu:
        """The menu of the document at ``index``: summarize, remove, copy its path."""
        menu = QMenu(self)
        path = index.data(DocumentListModel.PathRole)
        summarize = menu.addAction("Summarize…", lambda: self.summarize_requested.emit(path))
        summarize.setEnabled(index.data(DocumentListModel.StatusRole) == "indexed")
        summarize.setToolTip("Read the whole document and list its main points, each with its pages")
        menu.addAction("Remove from index", self.remove_selected)
        menu.addAction("Copy path", lambda: QApplication.clipboard().setText(path))
        return menu

    # ------------------------------------------------------------ adding
    def ask_add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add files", str(Path.home()), FILE_FILTER)
        if files:
            self.add_requested.emit([Path(f) for f in files])

    def ask_add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add folder (kept in sync)", str(Path.home()))
        if folder:
            self.add_requested.emit([Path(folder)])

