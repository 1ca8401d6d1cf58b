"""Building the ONNX files the embedder runs: export, int8 quantisation, a check, a manifest.

Built once per data folder (``Paths.models``) from the bundled all-MiniLM-L6-v2 weights:
exported (and for ``onnx-int8`` quantised) into a temporary file, checked against the
sentence-transformers reference on a few probe texts, then renamed into place with a
manifest that ties the file to its exact source weights and recipe. Building needs torch,
onnx and transformers; running a built file (``desktop.rag.embeddings``) needs neither.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from desktop.config import atomic_write_text
from desktop.errors import ModelError
from desktop.models.bundled import verify_embedding_model

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


def onnx_model_path(cache_dir: Path, backend: str) -> Path:
    return Path(cache_dir) / "all-MiniLM-L6-v2-onnx" / f"model-{backend}.onnx"


def _source_stamp(model_dir: Path) -> dict:
    weights = Path(model_dir) / "model.safetensors"
    st = weights.stat()
    return {"source": str(weights), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _manifest_for(path: Path) -> Path:
    return path.with_suffix(".json")


def is_built(path: Path, model_dir: Path, backend: str) -> bool:
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
    if is_built(onnx_model_path(cache_dir, backend), model_dir, backend):
        return True
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "torch", "transformers"))


def build_onnx_model(model_dir: Path, cache_dir: Path, backend: str) -> Path:
    """The path of the ONNX model for ``backend``, building it the first time (atomically)."""
    from desktop.models.bundled import file_lock

    target = onnx_model_path(cache_dir, backend)
    if is_built(target, model_dir, backend):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / (target.name + ".lock")):
        if is_built(target, model_dir, backend):  # another process built it while we waited
            return target
        for stale in [*target.parent.glob(".export-*.onnx"), *target.parent.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)  # a build killed mid-way (the lock says none runs now)
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
            agreement = _build_in_a_child(model_dir, tmp_fp32, tmp_out, backend)
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


BUILD_DEADLINE_S = 900  # a build takes ~30 s on 2 cores; one still running after 15 minutes is stuck


def _build_in_a_child(model_dir: Path, tmp_fp32: Path, tmp_out: Path, backend: str) -> float:
    """Export, quantise and check in a child process; returns the worst cosine to the reference.

    torch and transformers never load into Sprig's own process, and Ctrl+C (or closing the
    window) during the build ends it at once: in-process, a KeyboardInterrupt that landed in
    transformers' lazy imports came out as an unrelated import error, or the process died of
    the signal on its way out.
    """
    from desktop.child import TIMEOUT, ChildDied, child_process

    failed = f"Preparing the {backend} embedding model failed"
    with child_process(_build_child, (model_dir, tmp_fp32, tmp_out, backend), "sprig-embedder-build") as job:
        try:
            message = job.receive(BUILD_DEADLINE_S)
        except ChildDied as exc:
            raise ModelError(f"{failed}: the build process ended (exit code {exc.exitcode}).") from None
    if message is TIMEOUT:
        raise ModelError(f"{failed}: it was still running after {BUILD_DEADLINE_S // 60} minutes.")
    status, value = message
    if status != "ok":
        raise ModelError(f"{failed}: {value}")
    return float(value)


def _build_child(conn, model_dir: Path, tmp_fp32: Path, tmp_out: Path, backend: str) -> None:
    import signal

    from desktop.config import enforce_offline

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is Sprig's to handle: it ends this process
    enforce_offline()
    try:
        _export_fp32(model_dir, tmp_fp32)
        if backend == "onnx-int8":
            _quantize_int8(tmp_fp32, tmp_out)
        else:
            os.replace(tmp_fp32, tmp_out)
        conn.send(("ok", _check_against_reference(tmp_out, model_dir)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the reason
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


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

    from desktop.rag.embeddings import OnnxEncoder, load_sentence_transformer

    reference = load_sentence_transformer(model_dir, None).encode(
        _PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    built = OnnxEncoder(path, model_dir, None).encode(_PROBES)
    return float(np.min(np.sum(reference * built, axis=1)))
