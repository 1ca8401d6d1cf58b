"""The embedder on the real bundled all-MiniLM-L6-v2, for every backend.

The ONNX files are built once per test session from the bundled weights into a temp
models folder, exactly as the app builds them into the data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from desktop.errors import ModelError
from desktop.rag import embeddings as E
from desktop.rag import onnx_build
from desktop.rag.onnx_build import is_built

TEXTS = [
    "Super Bowl 50 was an American football game to determine the champion of the NFL.",
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy.",
    "Torque the M8 bolts to 25 N·m in a cross pattern.",
    "Photosynthesis converts light energy into chemical energy stored in glucose. " * 12,
    "x",
    "Ünïcödé — “quotes”, 日本語のテキスト, emoji 🙂",
]
QUERY = "Which NFL team won Super Bowl 50?"


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embedding-models")


@pytest.fixture(scope="session")
def reference():
    """sentence-transformers itself, the reference every backend must agree with."""
    from sentence_transformers import SentenceTransformer

    from desktop.models.bundled import embedding_model_dir

    model = SentenceTransformer(str(embedding_model_dir()), device="cpu", local_files_only=True)
    model.max_seq_length = 256
    return model.encode(TEXTS + [QUERY], normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="session")
def embedders(onnx_cache):
    out = {}
    for backend in E.BACKENDS:
        e = E.Embedder(backend=backend, cache_dir=onnx_cache)
        e.load()
        out[backend] = e
    return out


# minimum cosine to the sentence-transformers reference, per backend
AGREEMENT = {"torch": 0.99999, "onnx": 0.9999, "onnx-int8": 0.95}


@pytest.mark.parametrize("backend", E.BACKENDS)
def test_vectors_are_normalised_float32(embedders, backend):
    v = embedders[backend].embed(TEXTS)
    assert v.shape == (len(TEXTS), E.DIMENSIONS)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(v))


@pytest.mark.parametrize("backend", E.BACKENDS)
def test_agrees_with_sentence_transformers(embedders, reference, backend):
    v = embedders[backend].embed(TEXTS + [QUERY])
    cosine = np.sum(v * reference, axis=1)
    assert cosine.min() >= AGREEMENT[backend], cosine


@pytest.mark.parametrize("backend", E.BACKENDS)
def test_deterministic_and_independent_of_batching(embedders, backend):
    e = embedders[backend]
    a = e.embed(TEXTS)
    b = e.embed(TEXTS)
    np.testing.assert_array_equal(a, b)
    alone = np.stack([e.embed([t])[0] for t in TEXTS])
    # a text's vector does not depend on the other texts in its call
    np.testing.assert_allclose(alone, a, atol=2e-5 if backend == "torch" else 1e-6)
    np.testing.assert_allclose(e.embed_query(QUERY), e.embed([QUERY])[0], atol=1e-6)


@pytest.mark.parametrize("backend", E.BACKENDS)
def test_ranks_the_relevant_text_first(embedders, backend):
    e = embedders[backend]
    scores = e.embed(TEXTS) @ e.embed_query(QUERY)
    assert int(np.argmax(scores)) == 0


def test_empty_input(embedders):
    for e in embedders.values():
        assert e.embed([]).shape == (0, E.DIMENSIONS)


def test_model_id_names_the_vectors(embedders):
    ids = {b: e.model_id for b, e in embedders.items()}
    assert ids["torch"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert ids["onnx"] == ids["torch"]  # the same vectors, numerically
    assert ids["onnx-int8"] != ids["torch"]  # different vectors: the catalog must rebuild


def test_onnx_models_built_once_with_manifest(embedders, onnx_cache):
    for backend in ("onnx", "onnx-int8"):
        path = embedders[backend].onnx_path
        assert path.is_file() and path.parent.parent == onnx_cache
        manifest = json.loads(path.with_suffix(".json").read_text())
        assert manifest["backend"] == backend and manifest["recipe"] == onnx_build.ONNX_RECIPE
        assert manifest["agreement_min_cosine"] >= AGREEMENT[backend]
        before = path.stat().st_mtime_ns
        again = onnx_build.build_onnx_model(embedders[backend].model_dir, onnx_cache, backend)
        assert again == path and path.stat().st_mtime_ns == before  # not rebuilt
    # nothing half-written is left behind
    assert not [p for p in (onnx_cache / "all-MiniLM-L6-v2-onnx").iterdir() if p.name.startswith(".")]
    assert embedders["onnx-int8"].onnx_path.stat().st_size < embedders["onnx"].onnx_path.stat().st_size / 3


def test_needs_build_until_the_onnx_file_is_there(embedders, onnx_cache, tmp_path):
    assert E.Embedder(backend="onnx-int8", cache_dir=tmp_path).needs_build  # a fresh data folder
    assert not E.Embedder(backend="onnx-int8", cache_dir=onnx_cache).needs_build  # built, not loaded
    assert not embedders["onnx-int8"].needs_build
    assert not E.Embedder(backend="torch", cache_dir=tmp_path).needs_build  # nothing to build


def test_a_damaged_build_is_rebuilt(embedders, tmp_path):
    import shutil

    backend = "onnx-int8"
    src = embedders[backend].onnx_path
    dst = onnx_build.onnx_model_path(tmp_path, backend)
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    with open(dst, "r+b") as f:  # a truncated file (a crash mid-copy, a full disk)
        f.truncate(1000)
    assert not is_built(dst, embedders[backend].model_dir, backend)
    # what a build killed mid-way leaves behind (a 90 MB export, a half-written file)
    stale = [dst.parent / ".export-99999.onnx", dst.parent / f".{dst.name}.99999.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    e = E.Embedder(backend=backend, cache_dir=tmp_path)
    np.testing.assert_allclose(e.embed(TEXTS), embedders[backend].embed(TEXTS), atol=1e-6)
    assert not any(path.exists() for path in stale)


def test_backend_choice(monkeypatch, tmp_path):
    monkeypatch.setenv(E.BACKEND_ENV, "torch")
    assert E.Embedder(cache_dir=tmp_path).backend == "torch"
    monkeypatch.delenv(E.BACKEND_ENV)
    assert E.Embedder(backend="onnx", cache_dir=tmp_path).backend == "onnx"
    with pytest.raises(ValueError):
        E.Embedder(backend="tpu", cache_dir=tmp_path)


def test_onnx_backends_do_not_import_torch(embedders):
    """A built ONNX model runs with onnxruntime and tokenizers alone: no torch at start-up."""
    path = embedders["onnx-int8"].onnx_path.parent.parent
    code = (
        "import sys; from desktop.rag.embeddings import Embedder;"
        f"e = Embedder(backend='onnx-int8', cache_dir={str(path)!r}); e.embed(['hello world']);"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_default_is_recorded_in_the_catalog(embedders, tmp_path):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    lib = Library(Paths(tmp_path / "home"), Settings(), embedder=embedders["onnx-int8"])
    assert lib.catalog.get_meta("embedding_model") == embedders["onnx-int8"].model_id
    lib.close()
    # the same data folder opened with another backend's vectors must be rebuilt
    lib = Library(Paths(tmp_path / "home"), Settings(), embedder=embedders["torch"])
    assert lib.needs_rebuild
    lib.close()


def test_nothing_touches_the_network(embedders, no_network, onnx_cache, tmp_path):
    """Building and running every backend with the network guard on (conftest) and the
    Hugging Face hub forced offline."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    before = len(no_network)
    e = E.Embedder(backend="onnx", cache_dir=tmp_path)  # a fresh build, guarded
    e.embed(TEXTS)
    for emb in embedders.values():
        emb.embed(TEXTS)
    assert no_network[before:] == []


def test_the_build_runs_in_a_child_process_and_its_failure_is_reported(tmp_path):
    """torch and transformers load in the child, never in Sprig's own process."""
    torch_here = "torch" in sys.modules
    with pytest.raises(ModelError) as info:
        onnx_build._build_in_a_child(tmp_path / "no-model", tmp_path / "a.onnx", tmp_path / "b.tmp", "onnx-int8")
    assert "Preparing the onnx-int8 embedding model failed" in str(info.value)
    assert "no-model" in str(info.value)  # the child's own reason is kept
    assert ("torch" in sys.modules) == torch_here
