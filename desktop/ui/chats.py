"""The list of conversations: open, New chat (Ctrl+N), rename (F2) and delete."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

ID_ROLE = Qt.ItemDataRole.UserRole + 1


def when(timestamp: float, now: float | None = None) -> str:
    now = now or time.time()
    if now - timestamp < 24 * 3600 and time.localtime(now).tm_yday == time.localtime(timestamp).tm_yday:
        return time.strftime("%H:%M", time.localtime(timestamp))
    return time.strftime("%d %b", time.localtime(timestamp))


class ChatsPanel(QWidget):
    def __init__(self, controller, new_chat, parent=None):
        super().__init__(parent)
        self.controller = controller
        self._new_chat = new_chat
        title = QLabel("Chats")
        title.setObjectName("panelTitle")
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(new_chat)
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(self.new_button)
        self.list = QListWidget()
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setUniformItemSizes(True)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._open_item)
        self.list.itemClicked.connect(self._open_item)
        QShortcut(QKeySequence(Qt.Key.Key_F2), self.list, self.rename_current,
                  context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence.StandardKey.Delete, self.list, self.delete_current,
                  context=Qt.ShortcutContext.WidgetShortcut)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(header)
        layout.addWidget(self.list, 1)
        controller.conversations_changed.connect(self.reload)
        controller.conversation_opened.connect(lambda _c: self._select_current())
        self.reload()

    def reload(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for conv in self.controller.conversations():
            item = QListWidgetItem(conv.title)
            item.setData(ID_ROLE, conv.id)
            item.setToolTip(f"{conv.title}\nCollection: {conv.collection} · last message {when(conv.updated)}")
            self.list.addItem(item)
        self.list.blockSignals(False)
        self._select_current()

    def _select_current(self) -> None:
        current = self.controller.current
        for i in range(self.list.count()):
            item = self.list.item(i)
            if current is not None and item.data(ID_ROLE) == current.id:
                self.list.setCurrentItem(item)
                return
        self.list.clearSelection()

    def titles(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _open_item(self, item: QListWidgetItem) -> None:
        conv_id = item.data(ID_ROLE)
        current = self.controller.current
        if current is None or current.id != conv_id:
            self.controller.open(conv_id)

    def _selected_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item is not None else None

    def rename_current(self) -> None:
        conv_id = self._selected_id()
        if conv_id is None and self.controller.current is not None:
            conv_id = self.controller.current.id
        if conv_id is None:
            return
        old = next((c.title for c in self.controller.conversations() if c.id == conv_id), "")
        title, ok = QInputDialog.getText(self, "Rename chat", "New name:", text=old)
        if ok and title.strip():
            self.controller.rename(conv_id, title.strip())

    def delete_current(self) -> None:
        conv_id = self._selected_id()
        if conv_id is None:
            return
        title = self.list.currentItem().text()
        answer = QMessageBox.question(self, "Delete chat", f"Delete the chat “{title}” and its messages?")
        if answer == QMessageBox.StandardButton.Yes:
            self.controller.delete(conv_id)

    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        self.list.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction("Rename…", self.rename_current)
        menu.addAction("Delete…", self.delete_current)
        menu.exec(self.list.viewport().mapToGlobal(pos))
