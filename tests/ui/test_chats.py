"""The chat list: New chat (Ctrl+N), rename (F2), delete; the question box keys."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QInputDialog, QMessageBox


def action(window, text: str):
    return next(a for a in window.findChildren(type(window.stop_action)) if a.text() == text)


def test_new_chat_rename_and_delete(qtbot, make_window, monkeypatch):
    window = make_window()
    new_chat = action(window, "&New chat")
    assert new_chat.shortcut() == QKeySequence(QKeySequence.StandardKey.New)
    assert new_chat.shortcut().toString() == "Ctrl+N"
    new_chat.trigger()
    first = window.chat.current
    assert window.chats_panel.titles() == ["New chat"]
    new_chat.trigger()  # an empty chat is reused, not piled up
    assert window.chat.current.id == first.id and window.chats_panel.titles() == ["New chat"]

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Gearbox questions", True))
    window.chats_panel.list.setCurrentRow(0)
    action(window, "&Rename chat…").trigger()
    assert window.chats_panel.titles() == ["Gearbox questions"]
    assert window.chats.load(first.id).title == "Gearbox questions"
    assert window.chat_view.title.text() == "Gearbox questions"

    second = window.chats.create("Paint", "default")
    window.chat.conversations_changed.emit()
    assert sorted(window.chats_panel.titles()) == ["Gearbox questions", "Paint"]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    row = window.chats_panel.titles().index("Paint")
    window.chats_panel.list.setCurrentRow(row)
    window.chats_panel.delete_current()
    assert window.chats_panel.titles() == ["Gearbox questions"]
    assert window.chats.load(second.id) is None


def test_keyboard_shortcuts_are_set(qtbot, make_window):
    window = make_window()
    expected = {"Add &files…": "Ctrl+O", "Add f&older…": "Ctrl+Shift+O", "&Settings…": "Ctrl+,",
                "&Stop answer": "Esc", "&Rename chat…": "F2", "Close the source &viewer": "Ctrl+W",
                "Go to the &question box": "Ctrl+L", "&Quit": "Ctrl+Q"}
    for text, keys in expected.items():
        assert action(window, text).shortcut().toString() == keys, text
