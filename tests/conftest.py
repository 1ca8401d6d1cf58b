"""Shared test set-up: headless Qt, a temp data folder per test, and no network, ever.

Every test runs with SPRIG_HOME in a fresh temp folder and with socket connects to any
internet address turned into a failure, so a library that tries to phone home fails
the suite. The real bundled models are assembled once per run into a shared folder that every test
worker (pytest-xdist, one per core) and every child process reads.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_QUICK_BACKEND", "software")
# every test has a data folder of its own, but the model files (assembled GGUFs, the built
# embedder) are made once per run and shared by all of them, child processes included
_OWN_MODELS = "SPRIG_MODELS" not in os.environ
if _OWN_MODELS:
    import tempfile

    os.environ["SPRIG_MODELS"] = tempfile.mkdtemp(prefix="sprig-test-models-")

from desktop.config import enforce_offline  # noqa: E402
from desktop.cpu import allowed_cpus  # noqa: E402

enforce_offline()


def _pin_worker() -> None:
    """Each pytest-xdist worker gets cores of its own. Sprig fits its threads to the cores it
    may use, so two workers on two cores run one thread each instead of four threads fighting
    over two cores (llama.cpp's and ONNX Runtime's threads wait for each other at every step)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not worker.startswith("gw") or not count.isdigit() or not hasattr(os, "sched_setaffinity"):
        return
    cpus, n, k = allowed_cpus(), int(count), int(worker[2:])
    if n > 1 and len(cpus) >= n:
        os.sched_setaffinity(0, cpus[k::n])


_pin_worker()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("EVALDATA", REPO.parent / "shared" / "eval"))
SQUAD_ARTICLES = EVAL / "squad_v1.1_dev" / "derived" / "articles"


def eval_path(*parts: str) -> Path:
    path = EVAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"evaluation data not found at {path} (set EVALDATA)")
    return path


def load_eval():
    """The shared loaders module (stdlib only)."""
    tools = str(eval_path("tools"))
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import loaders

    return loaders


# ------------------------------------------------------------------ no network
class NetworkAttempt(AssertionError):
    pass


_attempts: list[tuple] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_remote(sock: socket.socket, address) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    host = address[0] if isinstance(address, tuple) else str(address)
    # a user may point Sprig at a server on this machine; tests only ever use loopback
    return not (host in ("localhost", "::1") or str(host).startswith("127."))


def _guarded_connect(self, address):
    if _is_remote(self, address):
        _attempts.append(address)
        raise NetworkAttempt(f"network connection attempted to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if _is_remote(self, address):
        _attempts.append(address)
        raise NetworkAttempt(f"network connection attempted to {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail the test on any outbound connection attempt (Chroma telemetry, hub calls...)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    before = len(_attempts)
    yield _attempts
    new = _attempts[before:]
    assert not new, f"network connections were attempted: {new}"


# ------------------------------------------------------------------ data folder
@pytest.fixture(autouse=True)
def sprig_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "sprig-home"
    home.mkdir()
    monkeypatch.setenv("SPRIG_HOME", str(home))
    return home


def pytest_xdist_auto_num_workers(config):
    """One worker per core, at most four: each worker loads its own models (about 1.5 GB)."""
    return max(1, min(4, os.cpu_count() or 1))


def pytest_unconfigure(config):
    if _OWN_MODELS:
        import shutil

        shutil.rmtree(os.environ["SPRIG_MODELS"], ignore_errors=True)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Bundled GGUF files, assembled once for the whole run (as the app does on first launch)."""
    return Path(os.environ["SPRIG_MODELS"])


@pytest.fixture(scope="session")
def qwen_path(models_dir) -> Path:
    from desktop.models.bundled import QWEN, assemble

    return assemble(QWEN, models_dir)


@pytest.fixture(scope="session")
def gemma_path(models_dir) -> Path:
    from desktop.models.bundled import GEMMA, assemble

    return assemble(GEMMA, models_dir)


@pytest.fixture(scope="session")
def embedder():
    """The real bundled all-MiniLM-L6-v2, loaded once."""
    from desktop.rag.embeddings import Embedder

    e = Embedder()
    e.load()
    return e


@pytest.fixture
def library(sprig_home, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    lib = Library(Paths(sprig_home), Settings(), embedder=embedder)
    yield lib
    lib.close()


@pytest.fixture(scope="session")
def qwen_model(qwen_path):
    from desktop.models.llm import LocalModel

    model = LocalModel(qwen_path, n_ctx=4096)
    model.load()
    yield model
    model.close()


@pytest.fixture(scope="session")
def gemma_model(gemma_path):
    from desktop.models.llm import LocalModel

    model = LocalModel(gemma_path, n_ctx=4096)
    model.load()
    yield model
    model.close()


@pytest.fixture(scope="session")
def squad_index(tmp_path_factory, embedder):
    """A library over the first six SQuAD articles, built once and shared (read-only use)."""
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    articles = sorted(eval_path("squad_v1.1_dev", "derived", "articles").glob("*.txt"))[:6]
    home = tmp_path_factory.mktemp("squad-home")
    lib = Library(Paths(home), Settings(), embedder=embedder)
    summary = lib.index(articles)
    assert not summary.failed, summary.failed
    yield lib
    lib.close()
