"""Loading the chat model in the background, with a state the status bar can show.

States: ``unloaded`` (nothing yet), ``assembling`` (first launch: the bundled model is put
together from its packages), ``loading``, ``ready``, ``failed``. A question asked before
``ready`` waits in the chat controller, visibly, and starts when ``ready`` fires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop.config import Paths, Settings
from desktop.ui.errors import user_message
from desktop.ui.workers import Worker

log = logging.getLogger(__name__)

EngineLoader = Callable[..., object]  # (library, settings, paths, progress) -> AnswerEngine


def default_loader(library, settings: Settings, paths: Paths, progress=None):
    from desktop.rag.answer import AnswerEngine

    return AnswerEngine.from_settings(library, settings, paths, progress=progress)


def model_title(settings: Settings) -> str:
    from desktop.models.bundled import BUNDLED

    if settings.model_endpoint:
        return f"server at {settings.model_endpoint}"
    bundled = BUNDLED.get(settings.model)
    return bundled.title if bundled else Path(settings.model).name


def needs_assembly(settings: Settings, paths: Paths) -> bool:
    from desktop.models.bundled import BUNDLED, is_assembled

    bundled = BUNDLED.get(settings.model)
    return bool(bundled and not settings.model_endpoint and not is_assembled(bundled, Path(paths.models)))


def load_job(loader: EngineLoader, library, settings: Settings, paths: Paths, report):
    """Runs on a worker: assemble (first launch) and load the model; reports its state."""
    # a copy: the window may change its own settings while this runs
    snapshot = replace(settings, system_prompts=dict(settings.system_prompts))
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total:
            report(("loading", done, total))
        elif now - last[0] >= 0.1:
            last[0] = now
            report(("assembling", done, total))

    report(("assembling", 0, 0) if needs_assembly(snapshot, paths) else ("loading", 0, 0))
    return loader(library, snapshot, paths, progress)


class EngineController(QObject):
    state_changed = Signal(str, str)  # state, a sentence for the status bar
    ready = Signal(object)  # the AnswerEngine
    failed = Signal(str)  # plain message

    def __init__(self, library, settings: Settings, paths: Paths, engine=None,
                 loader: EngineLoader | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.settings = settings
        self.paths = paths
        self.loader = loader or default_loader
        self.engine = engine
        self.state = "ready" if engine is not None else "unloaded"
        self.message = self._ready_text() if engine is not None else "Model not loaded yet"
        self.error = ""
        self._worker: Worker | None = None
        self._reload_after = False
        self._owned: list[object] = []  # engines this controller loaded (and must close)
        self._closing = False

    def _ready_text(self) -> str:
        name = getattr(getattr(self.engine, "model", None), "name", "") or model_title(self.settings)
        return f"Model ready: {name}"

    def _set(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self.state_changed.emit(state, message)

    @property
    def loading(self) -> bool:
        return self._worker is not None

    # ------------------------------------------------------------ control
    def load(self) -> None:
        """Start loading unless a model is ready or already loading."""
        if self._closing or self.engine is not None or self._worker is not None:
            return
        self.error = ""
        self._set("loading", f"Loading {model_title(self.settings)}…")
        worker = Worker(load_job, self.loader, self.library, self.settings, self.paths, name="load-model")
        worker.connect(yielded=self._on_progress, returned=self._on_loaded, errored=self._on_error,
                       finished=self._on_finished)
        self._worker = worker
        worker.start()

    def hold(self, reason: str) -> None:
        """Do not load now; say why. The next question (the user asking) loads the model."""
        if self.engine is None and self._worker is None:
            self._set("unloaded", reason)

    def reload(self) -> None:
        """The model settings changed: drop the current model and load the new one."""
        if self._worker is not None:
            self._reload_after = True
            return
        old, self.engine = self.engine, None
        if old is not None and old in self._owned:
            self._owned.remove(old)
            Worker(_close_engine, old, name="close-model").start()
        self._set("unloaded", "Model not loaded yet")
        self.load()

    def apply_settings(self, settings: Settings) -> None:
        """Answer settings that need no reload take effect on the next question."""
        self.settings = settings
        engine = self.engine
        if engine is not None:
            engine.temperature = settings.temperature
            engine.k = settings.passages_per_answer
            engine.max_answer_tokens = settings.max_answer_tokens
            engine.abstain_below = settings.abstain_below
            engine.system_prompts = dict(settings.system_prompts)

    def _on_progress(self, event) -> None:
        state, done, total = event
        if state == "assembling":
            pct = f" {100 * done // total}%" if total else ""
            self._set("assembling", f"First launch: preparing the bundled model{pct}…")
        else:
            self._set("loading", f"Loading {model_title(self.settings)}…")

    def _on_loaded(self, engine) -> None:
        if engine is None:
            self._on_error(RuntimeError("the model loader returned nothing"))
            return
        if self._closing:
            _close_engine(engine)
            return
        self.engine = engine
        self._owned.append(engine)
        self.apply_settings(self.settings)
        self._set("ready", self._ready_text())
        self.ready.emit(engine)

    def _on_error(self, exc: BaseException) -> None:
        self.error = user_message(exc)
        self._set("failed", f"The model could not be loaded: {self.error}")
        self.failed.emit(self.error)

    def _on_finished(self) -> None:
        self._worker = None
        if self._reload_after and not self._closing:
            self._reload_after = False
            self.reload()

    def shutdown(self, timeout_s: float = 20.0) -> bool:
        """Wait for a load in progress (it cannot be interrupted), then free owned models."""
        self._closing = True
        ok = True
        if self._worker is not None:
            ok = self._worker.wait(timeout_s)
        for engine in self._owned:
            _close_engine(engine)
        self._owned.clear()
        self.engine = None
        return ok


def _close_engine(engine) -> None:
    model = getattr(engine, "model", None)
    if model is not None:
        try:
            model.close()
        except Exception:  # noqa: BLE001
            log.exception("closing the model failed")
