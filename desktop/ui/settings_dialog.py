"""Settings: model (bundled, a GGUF file or a model server), answers, where the library lives
(this PC or a Chroma server) and the system prompt per collection.

The dialog edits a copy of ``Settings``; the window saves it (atomically) and applies it.
Each server has a Test button: the check runs on a worker (``desktop.ui.workers``) and its
finding (the server's models, Chroma's version and collections) or its error shows under it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
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
from desktop.rag.servers import (
    CHECK_TIMEOUT_S,
    ServerCheck,
    address_problem,
    check_chroma_server,
    check_model_server,
)
from desktop.rag.shared import who_am_i
from desktop.ui.theme import Colors
from desktop.ui.workers import Worker

CONTEXT_SIZES = [1024, 2048, 4096, 8192, 16384, 32768]
BUNDLED_CHOICES = [
    ("bundled-qwen", "Bundled: Qwen2.5-Coder 0.5B Instruct (default)"),
    ("bundled-gemma", "Bundled: Gemma 3 270M (fastest, weakest)"),
    ("bundled-qwen-1.5b", "Bundled: Qwen2.5-Coder 1.5B Instruct (slower; needs sprig[large])"),
]
CUSTOM = "custom"
SERVER = "server"
LOCAL = "local"


class ServerFields(QObject):
    """Address, secret, a Test button and what the test found, for one kind of server: rows
    of the dialog's form, shown only while that server is chosen."""

    def __init__(self, check, address_hint: str, secret_label: str, parent=None):
        super().__init__(parent)
        self.check = check  # (url, secret, timeout_s) -> ServerCheck, run on a worker
        self.timeout_s = CHECK_TIMEOUT_S
        self.worker: Worker | None = None
        self.secret_label = secret_label
        self.url = QLineEdit()
        self.url.setPlaceholderText(address_hint)
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText("only if the server asks for one")
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Connect to the server now and say what it offers")
        self.test_button.clicked.connect(self.test)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setMinimumWidth(360)  # else it is laid out as a tall narrow column
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.url.textEdited.connect(self._forget_result)
        self.secret.textEdited.connect(self._forget_result)
        self.address_row = QWidget()
        row = QHBoxLayout(self.address_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.url, 1)
        row.addWidget(self.test_button)
        self.form: QFormLayout | None = None
        self.shown = True

    def add_rows(self, form: QFormLayout) -> None:
        self.form = form
        form.addRow("Address", self.address_row)
        form.addRow(self.secret_label, self.secret)
        form.addRow("", self.result)
        self.set_shown(self.shown)

    def set_shown(self, shown: bool) -> None:
        self.shown = shown
        if self.form is not None:
            self.form.setRowVisible(self.address_row, shown)
            self.form.setRowVisible(self.secret, shown)
            self.form.setRowVisible(self.result, shown and bool(self.result.text()))

    def values(self) -> tuple[str, str]:
        return self.url.text().strip(), self.secret.text().strip()

    def test(self) -> None:
        url, secret = self.values()
        self.test_button.setEnabled(False)
        self._show(None, f"Testing {url or 'the server'}…")
        self.worker = Worker(self.check, url, secret, self.timeout_s, name="server check")
        asked = (url, secret)
        self.worker.connect(
            returned=lambda found: self._done(asked, found),
            errored=lambda exc: self._done(asked, ServerCheck(False, f"The test failed: {exc}")),
            finished=lambda: self.test_button.setEnabled(True),
        ).start()

    @property
    def testing(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def _done(self, asked: tuple[str, str], found: ServerCheck) -> None:
        if asked != self.values():
            return  # the fields changed while it ran: that answer is about another server
        self._show(found.ok, ("✓ " if found.ok else "✗ ") + found.summary)

    def _show(self, ok: bool | None, text: str) -> None:
        colors = Colors.from_palette()
        color = colors.muted if ok is None else colors.success if ok else colors.error
        self.result.setStyleSheet(f"color: {color.name()};")
        self.result.setText(text)
        self.set_shown(self.shown)

    def _forget_result(self) -> None:
        self.result.setText("")
        self.set_shown(self.shown)


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, collection: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.original = settings
        self.collection = collection

        self.model = QComboBox()
        for key, label in BUNDLED_CHOICES:
            self.model.addItem(label, key)
        self.model.addItem("A GGUF file…", CUSTOM)
        self.model.addItem("A model server (OpenAI-compatible API)", SERVER)
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("path to a .gguf chat model")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.path_row = QWidget()
        row = QHBoxLayout(self.path_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.model_path, 1)
        row.addWidget(browse)
        self.model_server = ServerFields(check_model_server, "http://127.0.0.1:8080/v1", "API key", self)
        self.model.currentIndexChanged.connect(self._update_rows)

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

        self.library = QComboBox()
        self.library.addItem("On this PC (in Sprig's data folder)", LOCAL)
        self.library.addItem("On a Chroma server", SERVER)
        self.chroma_server = ServerFields(check_chroma_server, "http://127.0.0.1:8000", "Token", self)
        self.signed_as = QLineEdit()
        self.signed_as.setPlaceholderText(who_am_i(""))
        self.signed_as.setToolTip("How the documents you add show to colleagues who share the library")
        self.library_note = QLabel("A change of library takes effect the next time Sprig starts. To take "
                                   "the documents already indexed along without re-embedding them, run "
                                   "`sprig library --to-server URL` (or `--to-local`) instead.")
        self.library_note.setObjectName("hint")
        self.library_note.setWordWrap(True)
        self.library.currentIndexChanged.connect(self._update_rows)
        self.chroma_server.url.textChanged.connect(self._update_rows)

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText(
            "Extra instructions for answers in this collection, e.g. “Answer in French.”"
        )
        self.system_prompt.setFixedHeight(90)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        form.addRow("Model", self.model)
        form.addRow("", self.path_row)
        self.model_server.add_rows(form)
        form.addRow("Temperature", self.temperature)
        form.addRow("Context size", self.context)
        form.addRow("Passages per answer", self.passages)
        form.addRow(self.general)
        library_box = QGroupBox("Library")
        form = self.library_form = QFormLayout(library_box)
        form.addRow("Documents' index", self.library)
        self.chroma_server.add_rows(form)
        form.addRow("Your name", self.signed_as)
        form.addRow(self.library_note)
        prompt_box = QGroupBox(f"System prompt for the collection “{collection}”")
        QVBoxLayout(prompt_box).addWidget(self.system_prompt)

        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(library_box)
        layout.addWidget(prompt_box)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.load(settings)

    def load(self, settings: Settings) -> None:
        index = self.model.findData(settings.model)
        if settings.model_endpoint:
            self.model.setCurrentIndex(self.model.findData(SERVER))
        elif index < 0:
            self.model.setCurrentIndex(self.model.findData(CUSTOM))
        else:
            self.model.setCurrentIndex(index)
        if index < 0:
            self.model_path.setText(settings.model)
        self.model_server.url.setText(settings.model_endpoint)
        self.model_server.secret.setText(settings.model_api_key)
        self.temperature.setValue(settings.temperature)
        size_index = self.context.findData(settings.context_size)
        if size_index < 0:
            self.context.addItem(f"{settings.context_size:,} tokens", settings.context_size)
            size_index = self.context.count() - 1
        self.context.setCurrentIndex(size_index)
        self.passages.setValue(settings.passages_per_answer)
        self.general.setChecked(settings.allow_general_knowledge)
        self.library.setCurrentIndex(self.library.findData(SERVER if settings.chroma_url else LOCAL))
        self.chroma_server.url.setText(settings.chroma_url)
        self.chroma_server.secret.setText(settings.chroma_token)
        self.signed_as.setText(settings.library_name)
        self.system_prompt.setPlainText(settings.system_prompts.get(self.collection, ""))
        self._update_rows()

    def _update_rows(self) -> None:
        self.path_row.setVisible(self.model.currentData() == CUSTOM)
        self.model_server.set_shown(self.model.currentData() == SERVER)
        on_server = self.library.currentData() == SERVER
        self.chroma_server.set_shown(on_server)
        self.library_form.setRowVisible(self.signed_as, on_server)
        chroma_url = self.chroma_server.url.text().strip() if on_server else ""
        self.library_note.setVisible(chroma_url != self.original.chroma_url)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.model_path.setText(path)

    def result_settings(self) -> Settings:
        """A new Settings with the dialog's values (the original is not changed)."""
        choice = self.model.currentData()
        model = self.original.model  # a server keeps the local model chosen before, for later
        if choice == CUSTOM:
            model = self.model_path.text().strip()
        elif choice != SERVER:
            model = choice
        endpoint, api_key = self.model_server.values()
        chroma_url, chroma_token = self.chroma_server.values()
        prompts = dict(self.original.system_prompts)
        prompt = self.system_prompt.toPlainText().strip()
        if prompt:
            prompts[self.collection] = prompt
        else:
            prompts.pop(self.collection, None)
        return replace(
            self.original,
            model=model,
            model_endpoint=endpoint if choice == SERVER else "",
            model_api_key=api_key,
            temperature=round(self.temperature.value(), 2),
            context_size=int(self.context.currentData()),
            passages_per_answer=self.passages.value(),
            allow_general_knowledge=self.general.isChecked(),
            chroma_url=chroma_url if self.library.currentData() == SERVER else "",
            chroma_token=chroma_token,
            library_name=self.signed_as.text().strip(),
            system_prompts=prompts,
        )

    def validate(self) -> str:
        """A plain reason the values cannot be used, or ""."""
        if self.model.currentData() == SERVER:
            problem = address_problem(self.model_server.url.text())
            if problem:
                return f"Model server: {problem}"
        if self.library.currentData() == SERVER:
            problem = address_problem(self.chroma_server.url.text())
            if problem:
                return f"Chroma server: {problem}"
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
