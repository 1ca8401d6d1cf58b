"""The vector store: Chroma, embedded in the data folder by default, or a Chroma server.

Chroma holds only ids, vectors and the owning document id; the chunk text lives in the
catalog, which is the source of truth. Each Sprig collection is one Chroma collection in
cosine space. Telemetry is off. A server's token (``chroma_token``) is sent as
``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from urllib.parse import urlparse

from desktop.config import enforce_offline
from desktop.errors import StoreError


def chroma_name(collection: str) -> str:
    """Chroma collection names are restricted; ours are any text, so hash them."""
    return "sprig_" + hashlib.sha1(collection.encode("utf-8")).hexdigest()[:20]


class VectorStore:
    def __init__(self, path: Path | None = None, url: str = "", embedding_model: str = "", token: str = ""):
        self.path = Path(path) if path else None
        self.url = url
        self.token = token.strip()
        self.embedding_model = embedding_model
        self._client = None
        self._collections: dict[str, object] = {}
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- client
    @property
    def client(self):
        with self._lock:
            if self._client is None:
                enforce_offline()
                import chromadb
                from chromadb.config import Settings

                settings = Settings(anonymized_telemetry=False, allow_reset=True)
                try:
                    if self.url:
                        parsed = urlparse(self.url)
                        self._client = chromadb.HttpClient(
                            host=parsed.hostname or "localhost",
                            port=parsed.port or 8000,
                            ssl=parsed.scheme == "https",
                            headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
                            settings=settings,
                        )
                    else:
                        assert self.path is not None
                        self.path.mkdir(parents=True, exist_ok=True)
                        self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
                except Exception as exc:  # noqa: BLE001
                    where = self.url or str(self.path)
                    raise StoreError(f"cannot open the vector store at {where}: {exc}") from exc
            return self._client

    def collection(self, name: str):
        with self._lock:
            col = self._collections.get(name)
            if col is None:
                col = self.client.get_or_create_collection(
                    chroma_name(name),
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={"sprig_collection": name, "embedding_model": self.embedding_model},
                )
                self._collections[name] = col
            return col

    def close(self) -> None:
        """Release the client: Chroma keeps one shared system per folder until its last client
        closes, and that system keeps the folder's files open."""
        with self._lock:
            self._collections.clear()
            client, self._client = self._client, None
            if client is not None and hasattr(client, "close"):
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    # ---------------------------------------------------------------- writes
    def upsert(self, collection: str, ids: list[str], vectors, doc_id: int) -> None:
        if not ids:
            return
        col = self.collection(collection)
        step = 4000
        for start in range(0, len(ids), step):
            col.upsert(
                ids=ids[start : start + step],
                embeddings=vectors[start : start + step],
                metadatas=[{"doc_id": int(doc_id)}] * len(ids[start : start + step]),
            )

    def delete_ids(self, collection: str, ids: list[str]) -> None:
        if not ids:
            return
        col = self.collection(collection)
        for start in range(0, len(ids), 4000):
            col.delete(ids=ids[start : start + 4000])

    def delete_document(self, collection: str, doc_id: int) -> None:
        self.collection(collection).delete(where={"doc_id": int(doc_id)})

    def drop_collection(self, collection: str) -> None:
        with self._lock:
            self._collections.pop(collection, None)
            try:
                self.client.delete_collection(chroma_name(collection))
            except Exception:  # noqa: BLE001 - already gone
                pass

    # ---------------------------------------------------------------- reads
    def query(self, collection: str, vector, k: int) -> list[tuple[str, float]]:
        """(chunk_id, cosine similarity) best first."""
        col = self.collection(collection)
        # no count() first: it costs more than the query at 100k vectors, and Chroma already
        # returns fewer hits (or none) when the collection holds fewer than k
        result = col.query(query_embeddings=[vector], n_results=k, include=["distances"])
        ids = result["ids"][0]
        distances = result["distances"][0]
        return [(cid, 1.0 - float(d)) for cid, d in zip(ids, distances, strict=True)]

    def collection_names(self) -> list[str]:
        """The Sprig collection names that have a Chroma collection."""
        names = []
        for col in self.client.list_collections():
            meta = getattr(col, "metadata", None) or {}
            if "sprig_collection" in meta:
                names.append(meta["sprig_collection"])
        return names

    def count(self, collection: str) -> int:
        return int(self.collection(collection).count())

    def all_ids(self, collection: str) -> set[str]:
        col = self.collection(collection)
        ids: set[str] = set()
        offset = 0
        while True:
            batch = col.get(include=[], limit=5000, offset=offset)["ids"]
            if not batch:
                return ids
            ids.update(batch)
            offset += len(batch)

    def existing(self, collection: str, ids: list[str]) -> set[str]:
        col = self.collection(collection)
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            found.update(col.get(ids=ids[start : start + 1000], include=[])["ids"])
        return found
