"""Settings: model, temperature, context size, passages per answer, system prompt per collection.

The dialog edits a copy of ``Settings``; the window saves it (atomically) and applies it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.config import Settings

CONTEXT_SIZES = [1024, 2048, 4096, 8192, 16384, 32768]
BUNDLED_CHOICES = [
    ("bundled-qwen", "Bundled: Qwen2.5-Coder 0.5B Instruct (default)"),
    ("bundled-gemma", "Bundled: Gemma 3 270M (fastest, weakest)"),
    ("bundled-qwen-1.5b", "Bundled: Qwen2.5-Coder 1.5B Instruct (slower; needs sprig[large])"),
]
CUSTOM = "custom"


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, collection: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self.original = settings
        self.collection = collection

        self.model = QComboBox()
        for key, label in BUNDLED_CHOICES:
            self.model.addItem(label, key)
        self.model.addItem("A GGUF file…", CUSTOM)
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("path to a .gguf chat model")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.path_row = QWidget()
        row = QHBoxLayout(self.path_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.model_path, 1)
        row.addWidget(browse)
        self.model.currentIndexChanged.connect(self._update_path_row)

        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setToolTip("0 = always the most likely words; higher = more varied answers")
        self.context = QComboBox()
        for size in CONTEXT_SIZES:
            self.context.addItem(f"{size:,} tokens", size)
        self.context.setToolTip("How much text the model reads at once (passages, history and answer)")
        self.passages = QSpinBox()
        self.passages.setRange(1, 12)
        self.passages.setToolTip("How many passages from your documents each answer may use")
        self.general = QCheckBox("When the documents don't hold the answer, let the model answer "
                                 "from general knowledge (marked as such)")
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText(
            "Extra instructions for answers in this collection, e.g. “Answer in French.”"
        )
        self.system_prompt.setFixedHeight(90)

        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow("", self.path_row)
        form.addRow("Temperature", self.temperature)
        form.addRow("Context size", self.context)
        form.addRow("Passages per answer", self.passages)
        form.addRow("", self.general)
        form.addRow(QLabel(f"System prompt for the collection “{collection}”"))
        form.addRow(self.system_prompt)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.load(settings)

    def load(self, settings: Settings) -> None:
        index = self.model.findData(settings.model)
        if index < 0:
            self.model.setCurrentIndex(self.model.findData(CUSTOM))
            self.model_path.setText(settings.model)
        else:
            self.model.setCurrentIndex(index)
        self.temperature.setValue(settings.temperature)
        size_index = self.context.findData(settings.context_size)
        if size_index < 0:
            self.context.addItem(f"{settings.context_size:,} tokens", settings.context_size)
            size_index = self.context.count() - 1
        self.context.setCurrentIndex(size_index)
        self.passages.setValue(settings.passages_per_answer)
        self.general.setChecked(settings.allow_general_knowledge)
        self.system_prompt.setPlainText(settings.system_prompts.get(self.collection, ""))
        self._update_path_row()

    def _update_path_row(self) -> None:
        self.path_row.setVisible(self.model.currentData() == CUSTOM)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.model_path.setText(path)

    def result_settings(self) -> Settings:
        """A new Settings with the dialog's values (the original is not changed)."""
        model = self.model.currentData()
        if model == CUSTOM:
            model = self.model_path.text().strip()
        prompts = dict(self.original.system_prompts)
        prompt = self.system_prompt.toPlainText().strip()
        if prompt:
            prompts[self.collection] = prompt
        else:
            prompts.pop(self.collection, None)
        return replace(
            self.original,
            model=model,
            temperature=round(self.temperature.value(), 2),
            context_size=int(self.context.currentData()),
            passages_per_answer=self.passages.value(),
            allow_general_knowledge=self.general.isChecked(),
            system_prompts=prompts,
        )

    def validate(self) -> str:
        """A plain reason the values cannot be used, or ""."""
        if self.model.currentData() != CUSTOM:
            return ""
        text = self.model_path.text().strip()
        if not text:
            return "Choose a GGUF file, or pick a bundled model."
        from desktop.errors import ModelError
        from desktop.models.gguf import check_gguf

        try:
            check_gguf(text)  # reads the header only
        except ModelError as exc:
            return str(exc)
        return ""

    def accept(self) -> None:
        problem = self.validate()
        if problem:
            self.error.setText(problem)
            self.error.show()
            return
        super().accept()
