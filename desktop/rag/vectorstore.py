"""The vector store: Chroma, embedded in the data folder by default, or a Chroma server.

Embedded, Chroma holds only ids, vectors and the owning document id; the chunk text lives in
the catalog, which is the source of truth. On a server (a shared library, see
``desktop.rag.shared``) each chunk also carries its text and location, and a second
collection per Sprig collection holds one record per document, so that any Sprig pointed
at the server can search, cite and show it. Each Sprig collection is one Chroma collection
in cosine space. Telemetry is off. A server's token (``chroma_token``) is sent as
``Authorization: Bearer TOKEN``; a server that cannot be reached, answers too slowly or
fails raises ``StoreUnavailable`` with a sentence naming it.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path
from urllib.parse import urlparse

from desktop.config import enforce_offline
from desktop.errors import StoreError, StoreUnavailable

SERVER_TIMEOUT_S = 30.0  # one request to a Chroma server (its client waits forever by default)
CONNECT_TIMEOUT_S = 5.0


def chroma_name(collection: str) -> str:
    """Chroma collection names are restricted; ours are any text, so hash them."""
    return "sprig_" + hashlib.sha1(collection.encode("utf-8")).hexdigest()[:20]


def records_name(collection: str) -> str:
    """The server collection holding a shared Sprig collection's document records."""
    return "sprigdocs_" + hashlib.sha1(collection.encode("utf-8")).hexdigest()[:20]


def server_problem(url: str, exc: BaseException) -> StoreError | None:
    """The user's sentence for a failed request to the Chroma server at ``url``, or None when
    ``exc`` is not about the server (a bug of ours: let it surface)."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - chromadb depends on it
        httpx = None
    from chromadb import errors as chroma_errors

    if httpx is not None and isinstance(exc, httpx.TimeoutException):
        return StoreUnavailable(f"The Chroma server at {url} did not answer within {SERVER_TIMEOUT_S:.0f} s")
    if httpx is not None and isinstance(exc, httpx.TransportError) or isinstance(exc, ConnectionError):
        return StoreUnavailable(f"Nothing answers at {url} ({exc}): is the Chroma server running?")
    if isinstance(exc, ValueError) and "connect" in str(exc).lower():
        return StoreUnavailable(f"Nothing answers at {url}: is the Chroma server running?")
    if isinstance(exc, (chroma_errors.AuthorizationError, chroma_errors.ChromaAuthError)):
        return StoreError(f"The Chroma server at {url} refused the token ({exc}): check it in Settings")
    if isinstance(exc, chroma_errors.ChromaError) and exc.code() >= 429:
        return StoreUnavailable(f"The Chroma server at {url} failed ({exc.name()}: {exc})")
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            return StoreError(f"The Chroma server at {url} refused the token (HTTP {status}): check it in Settings")
        return StoreUnavailable(f"The Chroma server at {url} failed (HTTP {status})")
    return None


def _guarded(method):
    """On a server, a failed request becomes a StoreError that names the server."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            problem = server_problem(self.url, exc) if self.url else None
            if problem is None:
                raise
            with self._lock:  # a new connection next time (the server may have restarted)
                self._client = None
                self._collections.clear()
            raise problem from exc

    return wrapper


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
                        _set_timeout(self._client)
                    else:
                        assert self.path is not None
                        self.path.mkdir(parents=True, exist_ok=True)
                        self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
                except Exception as exc:  # noqa: BLE001
                    problem = server_problem(self.url, exc) if self.url else None
                    if problem is not None:
                        raise problem from exc
                    where = self.url or str(self.path)
                    raise StoreError(f"cannot open the vector store at {where}: {exc}") from exc
            return self._client

    @property
    def shared(self) -> bool:
        """A server: chunks carry their text and location, documents have records."""
        return bool(self.url)

    @_guarded
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
    @_guarded
    def upsert(self, collection: str, ids: list[str], vectors, doc_id: int | None = None, *,
               texts: list[str] | None = None, metadatas: list[dict] | None = None) -> None:
        """Vectors by id; locally tagged with the document's id, on a server with each chunk's
        text and metadata (``texts``, ``metadatas``)."""
        if not ids:
            return
        col = self.collection(collection)
        step = 1000 if self.url else 4000  # a server refuses very large requests
        for start in range(0, len(ids), step):
            part = slice(start, start + step)
            if metadatas is None:
                metas = [{"doc_id": int(doc_id)}] * len(ids[part])
            else:
                metas = metadatas[part]
            col.upsert(ids=ids[part], embeddings=vectors[part], metadatas=metas,
                       documents=texts[part] if texts is not None else None)

    @_guarded
    def delete_where(self, collection: str, where: dict) -> None:
        self.collection(collection).delete(where=where)

    @_guarded
    def delete_ids(self, collection: str, ids: list[str]) -> None:
        if not ids:
            return
        col = self.collection(collection)
        for start in range(0, len(ids), 4000):
            col.delete(ids=ids[start : start + 4000])

    @_guarded
    def delete_document(self, collection: str, doc_id: int) -> None:
        self.collection(collection).delete(where={"doc_id": int(doc_id)})

    @_guarded
    def drop_collection(self, collection: str) -> None:
        with self._lock:
            self._collections.pop(collection, None)
            self._collections.pop(("records", collection), None)
            client = self.client
            for name in (chroma_name(collection), records_name(collection)):
                try:
                    client.delete_collection(name)
                except Exception as exc:  # noqa: BLE001 - already gone is fine, a lost server is not
                    if self.url and server_problem(self.url, exc) is not None:
                        raise
                    continue

    # ---------------------------------------------------------------- document records (a server)
    @_guarded
    def _records(self, collection: str):
        with self._lock:
            key = ("records", collection)
            col = self._collections.get(key)
            if col is None:
                col = self.client.get_or_create_collection(
                    records_name(collection), embedding_function=None,
                    metadata={"sprig_records": collection})
                self._collections[key] = col
            return col

    @_guarded
    def records(self, collection: str) -> dict[str, dict]:
        """Document key (content hash) -> its record."""
        out: dict[str, dict] = {}
        for got in _pages(self._records(collection), include=["metadatas"]):
            out.update((k, m or {}) for k, m in zip(got["ids"], got["metadatas"], strict=True)
                       if not k.startswith("~"))  # "~changes": a marker, not a document
        return out

    @_guarded
    def record(self, collection: str, key: str) -> dict | None:
        got = self._records(collection).get(ids=[key], include=["metadatas"])
        return (got["metadatas"][0] or {}) if got["ids"] else None

    def put_record(self, collection: str, key: str, meta: dict) -> None:
        self.put_records(collection, {key: meta})

    @_guarded
    def put_records(self, collection: str, records: dict[str, dict]) -> None:
        """Document records by key (a record carries no vector: a placeholder one)."""
        keys = list(records)
        col = self._records(collection)
        for start in range(0, len(keys), 1000):
            part = keys[start:start + 1000]
            col.upsert(ids=part, embeddings=[[1.0]] * len(part),
                       metadatas=[{k: v for k, v in records[key].items() if v is not None} for key in part])

    @_guarded
    def delete_record(self, collection: str, key: str) -> None:
        self._records(collection).delete(ids=[key])

    def shared_collections(self) -> list[str]:
        """The Sprig collections that have document records on the server."""
        return self._names_with("sprig_records")

    @_guarded
    def chunks_where(self, collection: str, where: dict) -> list[tuple[str, str, dict]]:
        """(id, text, metadata) of the chunks matching ``where``."""
        out: list[tuple[str, str, dict]] = []
        for got in _pages(self.collection(collection), where=where, include=["documents", "metadatas"], limit=2000):
            out.extend((i, t, m or {}) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True))
        return out

    @_guarded
    def chunk_docs(self, collection: str) -> dict[str, str]:
        """id -> the content hash of its document, for every chunk on the server."""
        out: dict[str, str] = {}
        for got in _pages(self.collection(collection), include=["metadatas"]):
            out.update((i, str((m or {}).get("doc", ""))) for i, m in zip(got["ids"], got["metadatas"], strict=True))
        return out

    @_guarded
    def vectors(self, collection: str, ids: list[str]) -> dict:
        """id -> vector for the ids the collection holds."""
        col = self.collection(collection)
        out = {}
        for start in range(0, len(ids), 1000):
            got = col.get(ids=ids[start:start + 1000], include=["embeddings"])
            out.update(zip(got["ids"], got["embeddings"], strict=True))
        return out

    # ---------------------------------------------------------------- reads
    @_guarded
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
        return self._names_with("sprig_collection")

    @_guarded
    def _names_with(self, key: str) -> list[str]:
        """The values of metadata ``key`` over the Chroma collections that have it."""
        names = []
        for col in self.client.list_collections():
            meta = getattr(col, "metadata", None) or {}
            if key in meta:
                names.append(meta[key])
        return names

    @_guarded
    def count(self, collection: str) -> int:
        return int(self.collection(collection).count())

    @_guarded
    def all_ids(self, collection: str) -> set[str]:
        ids: set[str] = set()
        for got in _pages(self.collection(collection), include=[]):
            ids.update(got["ids"])
        return ids

    @_guarded
    def existing(self, collection: str, ids: list[str]) -> set[str]:
        col = self.collection(collection)
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            found.update(col.get(ids=ids[start : start + 1000], include=[])["ids"])
        return found


def _pages(col, limit: int = 5000, **get):
    """``col.get(**get)`` a page at a time, until a page comes back empty."""
    offset = 0
    while True:
        got = col.get(limit=limit, offset=offset, **get)
        if not got["ids"]:
            return
        yield got
        offset += len(got["ids"])


def _set_timeout(client) -> None:
    """Chroma's HTTP client waits forever for an answer: a hung server would freeze indexing."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(SERVER_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
