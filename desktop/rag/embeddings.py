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
(``Paths.models``): exported and quantised into a temporary file, checked against the
PyTorch reference, then renamed into place, with a manifest that ties them to the exact
source weights and recipe. Nothing is downloaded. Building needs torch and onnx; using a
built file needs only onnxruntime and tokenizers, so the ONNX backends never import torch.

``SPRIG_EMBEDDING_BACKEND`` overrides the default backend.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path

from desktop.config import atomic_write_text, enforce_offline
from desktop.errors import ModelError
from desktop.models.bundled import EMBEDDING_MODEL_ID, embedding_model_dir, verify_embedding_model

DIMENSIONS = 384
MAX_TOKENS = 256  # what all-MiniLM-L6-v2 reads; longer inputs are truncated (as sentence-transformers does)

BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx-int8"
BACKEND_ENV = "SPRIG_EMBEDDING_BACKEND"

# bump when the export or quantisation recipe changes: built files are then rebuilt
ONNX_RECIPE = 1
# a built model must agree with the PyTorch reference at least this well (cosine, worst probe)
_MIN_AGREEMENT = {"onnx": 0.9999, "onnx-int8": 0.95}
_PROBES = [
    "The quick brown fox jumps over the lazy dog.",
    "Which NFL team represented the AFC at Super Bowl 50?",
    "Net revenue for fiscal 2022 was $1,577 million, up 12% year over year, driven by "
    "higher volumes in the Americas and favourable pricing.",
    "Torque the M8 bolts to 25 N·m in a cross pattern, then check again after the first hour "
    "of operation. " * 6,
    "x",
]


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
        self._model = None  # torch: a SentenceTransformer; onnx: an _OnnxEncoder
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
        return self._model is None and self.backend != "torch" and not _is_built(
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
                    self._model = _load_sentence_transformer(self.model_dir, self.threads)
                else:
                    path = build_onnx_model(self.model_dir, self.cache_dir, self.backend)
                    self._model = _OnnxEncoder(path, self.model_dir, self.threads)
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


def _load_sentence_transformer(model_dir: Path, threads: int | None):
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
    """Physical cores, as PyTorch uses by default."""
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except Exception:  # noqa: BLE001
        return max(1, os.cpu_count() or 1)


class _OnnxEncoder:
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


def onnx_model_path(cache_dir: Path, backend: str) -> Path:
    return Path(cache_dir) / "all-MiniLM-L6-v2-onnx" / f"model-{backend}.onnx"


def _source_stamp(model_dir: Path) -> dict:
    weights = Path(model_dir) / "model.safetensors"
    st = weights.stat()
    return {"source": str(weights), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _manifest_for(path: Path) -> Path:
    return path.with_suffix(".json")


def _is_built(path: Path, model_dir: Path, backend: str) -> bool:
    try:
        manifest = json.loads(_manifest_for(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    expected = {"backend": backend, "recipe": ONNX_RECIPE, **_source_stamp(model_dir),
                "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return all(manifest.get(k) == v for k, v in expected.items())


def onnx_available(model_dir: Path, cache_dir: Path, backend: str) -> bool:
    """True when ``backend`` can run here: built already, or buildable (torch + onnx installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    if _is_built(onnx_model_path(cache_dir, backend), model_dir, backend):
        return True
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "torch", "transformers"))


def build_onnx_model(model_dir: Path, cache_dir: Path, backend: str) -> Path:
    """The path of the ONNX model for ``backend``, building it the first time (atomically)."""
    from desktop.models.bundled import file_lock

    target = onnx_model_path(cache_dir, backend)
    if _is_built(target, model_dir, backend):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / (target.name + ".lock")):
        if _is_built(target, model_dir, backend):  # another process built it while we waited
            return target
        for module in ("onnx", "torch", "transformers"):
            if importlib.util.find_spec(module) is None:
                raise ModelError(
                    f"Cannot prepare the {backend} embedding model: the package '{module}' is not "
                    f"installed. Reinstall Sprig, or set {BACKEND_ENV}=torch."
                )
        verify_embedding_model(model_dir)
        tmp_fp32 = target.parent / f".export-{os.getpid()}.onnx"
        tmp_out = target.parent / f".{target.name}.{os.getpid()}.tmp"
        try:
            _export_fp32(model_dir, tmp_fp32)
            if backend == "onnx-int8":
                _quantize_int8(tmp_fp32, tmp_out)
            else:
                os.replace(tmp_fp32, tmp_out)
            agreement = _check_against_reference(tmp_out, model_dir)
            if agreement < _MIN_AGREEMENT[backend]:
                raise ModelError(
                    f"The {backend} embedding model disagrees with the reference "
                    f"(cosine {agreement:.4f} < {_MIN_AGREEMENT[backend]}); set {BACKEND_ENV}=torch."
                )
            with open(tmp_out, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_out, target)
        finally:
            tmp_fp32.unlink(missing_ok=True)
            tmp_out.unlink(missing_ok=True)
        st = target.stat()
        import onnxruntime

        atomic_write_text(_manifest_for(target), json.dumps({
            "backend": backend, "recipe": ONNX_RECIPE, **_source_stamp(model_dir),
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "agreement_min_cosine": round(agreement, 6),
            "onnxruntime": onnxruntime.__version__,
        }, indent=2))
    return target


def _export_fp32(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class _Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = torch.ones((2, 16), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Encoder(model), (example, example, torch.zeros_like(example)), str(out),
            input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
            opset_version=17, do_constant_folding=True, dynamo=False,
        )


def _quantize_int8(source: Path, out: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice on the root logger
    try:
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


def _check_against_reference(path: Path, model_dir: Path) -> float:
    """The worst cosine between the built model and sentence-transformers on the probe texts."""
    import numpy as np

    reference = _load_sentence_transformer(model_dir, None).encode(
        _PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    built = _OnnxEncoder(path, model_dir, None).encode(_PROBES)
    return float(np.min(np.sum(reference * built, axis=1)))
