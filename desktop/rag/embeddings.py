"""Sentence embeddings with the bundled all-MiniLM-L6-v2, loaded lazily and offline.

Three backends compute the same model (mean pooling of the last hidden states,
then L2 normalisation, inputs truncated at 256 word pieces):

* ``torch``: sentence-transformers on PyTorch, fp32. The reference.
* ``onnx``: the bundled weights exported once to ONNX (fp32) and run by ONNX Runtime.
  Numerically the same vectors as ``torch`` (cosine >= 0.9999), so the same ``model_id``.
* ``onnx-int8``: that export with its matrix weights quantised to int8 (per output
  channel, activations quantised on the fly). About 2x the throughput of fp32 on a CPU; the
  vectors differ slightly (cosine ~0.99 to fp32), so it has its own ``model_id`` and a
  catalog built with another backend is flagged for a rebuild.

The ONNX files are built locally from the bundled weights, once, into the data folder
(``desktop.rag.onnx_build``). Nothing is downloaded. Using a built file needs only
onnxruntime and tokenizers, so the ONNX backends never import torch.

``SPRIG_EMBEDDING_BACKEND`` overrides the default backend.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from desktop.config import enforce_offline
from desktop.cpu import physical_cores
from desktop.models.bundled import EMBEDDING_MODEL_ID, embedding_model_dir, verify_embedding_model
from desktop.rag.onnx_build import (
    BACKEND_ENV,
    build_onnx_model,
    is_built,
    onnx_available,
    onnx_model_path,
)

DIMENSIONS = 384
MAX_TOKENS = 256  # what all-MiniLM-L6-v2 reads; longer inputs are truncated (as sentence-transformers does)

BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx-int8"

def _model_ids() -> dict[str, str]:
    return {
        "torch": EMBEDDING_MODEL_ID,
        "onnx": EMBEDDING_MODEL_ID,  # same vectors as torch
        "onnx-int8": EMBEDDING_MODEL_ID + "#onnx-int8",
    }


def resolve_backend(requested: str | None = None) -> str:
    backend = (requested or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND).strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r} (choose from {', '.join(BACKENDS)})")
    return backend


class Embedder:
    """Normalised, batched embeddings. Heavy libraries load on first use, not on import."""

    dimensions = DIMENSIONS

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32, threads: int | None = None,
                 backend: str | None = None, cache_dir: Path | None = None):
        self.model_dir = Path(model_dir) if model_dir else embedding_model_dir()
        self.batch_size = batch_size
        self.threads = threads
        self._cache_dir = Path(cache_dir) if cache_dir else None
        explicit = backend or os.environ.get(BACKEND_ENV)
        self.backend = resolve_backend(backend)
        if not explicit and self.backend != "torch" and not onnx_available(
                self.model_dir, self.cache_dir, self.backend):
            self.backend = "torch"  # an install without ONNX support still works
        self._model = None  # torch: a SentenceTransformer; onnx: an OnnxEncoder
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Names the vectors: it changes whenever they would (see Library._check_embedding_model)."""
        return _model_ids()[self.backend]

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            from desktop.config import Paths

            self._cache_dir = Paths.default().models
        return self._cache_dir

    @property
    def tokenizer(self):
        from desktop.rag.chunking import load_tokenizer

        return load_tokenizer(str(self.model_dir))

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def needs_build(self) -> bool:
        """True until the ONNX file is built in this data folder (about 30 s on 2 cores, once)."""
        return self._model is None and self.backend != "torch" and not is_built(
            onnx_model_path(self.cache_dir, self.backend), self.model_dir, self.backend)

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file this embedder runs (None for the torch backend)."""
        if self.backend == "torch":
            return None
        return onnx_model_path(self.cache_dir, self.backend)

    def load(self):
        with self._lock:
            if self._model is None:
                enforce_offline()
                if self.backend == "torch":
                    self._model = load_sentence_transformer(self.model_dir, self.threads)
                else:
                    path = build_onnx_model(self.model_dir, self.cache_dir, self.backend)
                    self._model = OnnxEncoder(path, self.model_dir, self.threads)
            return self._model

    def embed(self, texts: list[str], batched: bool = False):
        """A float32 array of shape (len(texts), 384), each row of unit length.

        ``batched``: short texts scored on the fly (evidence sentences) run in padded batches of
        16, 1.9x faster here for 50 sentences; stored vectors stay one text per call, so a
        vector never depends on which texts were embedded with it.
        """
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self.load()
        if self.backend == "torch":
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        else:
            vectors = (model.encode(list(texts), 16, per_text=False) if batched
                       else model.encode(list(texts), self.batch_size))
        return vectors.astype(np.float32, copy=False)

    def embed_query(self, text: str):
        return self.embed([text])[0]


def load_sentence_transformer(model_dir: Path, threads: int | None):
    verify_embedding_model(model_dir)
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    model.max_seq_length = min(MAX_TOKENS, model.max_seq_length or MAX_TOKENS)
    return model


# ---------------------------------------------------------------- ONNX Runtime


def embedding_threads() -> int:
    """Physical cores (of those this process may run on), as PyTorch uses by default."""
    return physical_cores()


class OnnxEncoder:
    """all-MiniLM-L6-v2 on ONNX Runtime: tokenise, run, mean-pool, normalise.

    By default each text runs on its own (``per_text``): on a CPU that is faster than
    padded batches for chunk-sized inputs (measured: bench/perf.py's embedding sweep), and
    the int8 model quantises activations per call, so a vector then never depends on which
    other texts were embedded with it. ``per_text=False`` batches texts sorted by length.
    """

    def __init__(self, path: Path, model_dir: Path, threads: int | None, per_text: bool = True):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        verify_embedding_model(model_dir, ("tokenizer.json",))  # the weights were checked at export
        if hasattr(ort, "disable_telemetry_events"):  # belt and braces: the env var is set first
            ort.disable_telemetry_events()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or embedding_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # ONNX Runtime's default of briefly spinning idle threads is kept: turning it off saves
        # CPU time on a busy machine but indexed 20% slower on an idle 2-core one
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer = tokenizer
        self.per_text = per_text

    def encode(self, texts: list[str], batch_size: int = 32, per_text: bool | None = None):
        import numpy as np

        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        one_by_one = self.per_text if per_text is None else per_text
        step = 1 if one_by_one else max(1, batch_size)
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            out[idx] = self._run([texts[i] for i in idx])
        return out

    def _run(self, texts: list[str]):
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)
