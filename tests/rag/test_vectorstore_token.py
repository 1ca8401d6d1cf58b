"""The Chroma server's token (``chroma_token``) goes out as ``Authorization: Bearer TOKEN``.

The server here only records what the real chromadb client sends and refuses it, as a Chroma
server with token authentication refuses a wrong token.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from desktop.errors import StoreError
from desktop.rag.vectorstore import VectorStore


class Refusing(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Authorization")))
        data = json.dumps({"error": "Unauthorized", "message": "token refused"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def refusing_server():
    Refusing.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("token, header", [(" s3cret ", "Bearer s3cret"), ("", None)])
def test_the_token_is_sent_as_a_bearer_header(refusing_server, token, header):
    store = VectorStore(url=refusing_server, token=token)
    with pytest.raises(StoreError) as caught:
        store.client  # noqa: B018 - opening the client asks the server who we are
    assert refusing_server in str(caught.value) and "token refused" in str(caught.value)
    assert Refusing.seen and all(auth == header for _path, auth in Refusing.seen), Refusing.seen


def test_the_library_sends_the_token_from_its_settings(refusing_server, sprig_home, embedder):
    from desktop.config import Paths, Settings
    from desktop.rag.library import Library

    settings = Settings(chroma_url=refusing_server, chroma_token="from-settings")
    try:
        lib = Library(Paths(sprig_home), settings, embedder=embedder)
        lib.store.client  # noqa: B018
    except StoreError:
        pass
    assert ("Bearer from-settings" in {auth for _path, auth in Refusing.seen}), Refusing.seen
