"""Sentence embeddings with the bundled all-MiniLM-L6-v2, loaded lazily and offline."""

from __future__ import annotations

import threading
from pathlib import Path

from desktop.config import enforce_offline
from desktop.models.bundled import EMBEDDING_MODEL_ID, embedding_model_dir

DIMENSIONS = 384


class Embedder:
    """Normalised, batched embeddings. Heavy libraries load on first use, not on import."""

    model_id = EMBEDDING_MODEL_ID
    dimensions = DIMENSIONS

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32, threads: int | None = None):
        self.model_dir = Path(model_dir) if model_dir else embedding_model_dir()
        self.batch_size = batch_size
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self):
        from desktop.rag.chunking import load_tokenizer

        return load_tokenizer(str(self.model_dir))

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self):
        with self._lock:
            if self._model is None:
                enforce_offline()
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads:
                    torch.set_num_threads(self.threads)
                model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
                model.max_seq_length = min(256, model.max_seq_length or 256)
                self._model = model
            return self._model

    def embed(self, texts: list[str]):
        """A float32 array of shape (len(texts), 384), each row of unit length."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self.load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def embed_query(self, text: str):
        return self.embed([text])[0]
