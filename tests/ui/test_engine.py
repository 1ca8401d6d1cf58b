"""Loading the model in the background: a first launch shows that it assembles the bundled
model, then the model is ready; a model change in the settings reloads it."""

from __future__ import annotations

from dataclasses import replace

from desktop.config import Paths, Settings
from desktop.models.bundled import GEMMA


def test_a_first_launch_shows_it_is_preparing_the_bundled_model(qtbot, make_window, library, sprig_home, monkeypatch):
    monkeypatch.setenv("SPRIG_MODELS", str(sprig_home / "models"))  # a first launch: not the run's shared models
    settings = Settings(model="bundled-gemma", context_size=1024, auto_load_model=True)
    window = make_window(library=library, settings=settings, auto_load=None)  # auto-load, as the app does
    states: list[tuple[str, str]] = []
    window.engine.state_changed.connect(lambda state, message: states.append((state, message)))
    assert "First launch" in window.model_status.text()
    qtbot.waitUntil(lambda: window.engine.state in ("ready", "failed"), timeout=180_000)
    try:
        assert window.engine.state == "ready", window.engine.message
        assembling = [m for s, m in states if s == "assembling"]
        assert assembling and all(m.startswith("First launch: preparing the bundled model") for m in assembling)
        assert any("%" in m for m in assembling)
        assert ("loading" in [s for s, _m in states]) and states[-1][0] == "ready"
        assert (Paths(sprig_home).models / GEMMA.filename).is_file()
        assert window.model_status.text().startswith("● Model ready")
    finally:
        window.close()
        (Paths(sprig_home).models / GEMMA.filename).unlink(missing_ok=True)  # 250 MB


def test_changing_the_model_in_settings_reloads_it(qtbot, make_window, library, engine):
    loads = []

    def loader(lib, settings, paths, progress):
        loads.append(settings.model)
        return engine

    window = make_window(library=library, engine=engine, engine_loader=loader)
    assert window.engine.state == "ready"
    window.apply_settings(replace(window.settings, temperature=0.9))  # no reload for this
    assert loads == [] and engine.temperature == 0.9
    window.apply_settings(replace(window.settings, model="bundled-gemma"))
    qtbot.waitUntil(lambda: window.engine.state == "ready" and loads == ["bundled-gemma"], timeout=10_000)
    assert Settings.load(window.paths.settings).model == "bundled-gemma"
