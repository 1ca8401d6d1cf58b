"""Hybrid retrieval: vector similarity and BM25 keyword search, fused by reciprocal rank.

Vectors find paraphrases; keywords find the exact part number or rare name that an
embedding blurs. Every passage carries both scores so the answer step can abstain on
weak evidence and the window can show why a passage was chosen.
"""

from __future__ import annotations

import re

from desktop.rag.types import Passage

RRF_K = 60

_STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if in
    into is it its of on or our so than that the their them then there these they this to
    was we were what when where which who whom whose why will with would you your about
    after also any between both each more most other some such only over under up""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def keyword_query(text: str) -> str:
    """An FTS5 query that ORs the meaningful words of ``text`` (each quoted, so no syntax leaks)."""
    words = []
    seen = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or word in seen or (len(word) < 2 and not word.isdigit()):
            continue
        seen.add(word)
        words.append('"' + word.replace('"', "") + '"')
    return " OR ".join(words[:32])


def fuse(rankings: list[list[str]], k: int = RRF_K) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def hybrid_search(catalog, store, embedder, query: str, collection: str, k: int = 5,
                  mode: str = "hybrid", candidates: int | None = None) -> list[Passage]:
    """Top ``k`` passages for ``query``. ``mode`` is "hybrid", "vector" or "keyword"."""
    query = query.strip()
    if not query:
        return []
    n = candidates or max(30, 4 * k)
    vector_hits: list[tuple[str, float]] = []
    keyword_hits: list[tuple[str, float]] = []
    qvec = None
    if mode in ("hybrid", "vector"):
        qvec = embedder.embed_query(query)
        vector_hits = store.query(collection, qvec, n)
    if mode in ("hybrid", "keyword"):
        keyword_hits = catalog.keyword_search(collection, keyword_query(query), n)
    vector_rank = {cid: i for i, (cid, _) in enumerate(vector_hits, start=1)}
    keyword_rank = {cid: i for i, (cid, _) in enumerate(keyword_hits, start=1)}
    similarity = dict(vector_hits)
    bm25 = dict(keyword_hits)
    fused = fuse([[c for c, _ in vector_hits], [c for c, _ in keyword_hits]])
    ranked = sorted(fused, key=lambda c: (-fused[c], -(similarity.get(c) or 0.0)))
    # the same file kept in two folders is indexed twice: its passages are shown once, so a
    # copy never takes the place of another passage
    stored = catalog.chunks_by_ids(ranked[: 2 * k])
    top, seen = [], set()
    for cid in ranked[: 2 * k]:
        chunk = stored.get(cid)
        if chunk is None:  # a vector whose chunk is gone: skip, never show stale text
            continue
        key = (chunk.page, " ".join(chunk.text.split()))
        if key not in seen:
            seen.add(key)
            top.append(cid)
        if len(top) == k:
            break
    if qvec is not None:
        missing = [c for c in top if c not in similarity]
        if missing:
            similarity.update(_similarities(store, collection, qvec, missing))
    passages = []
    for cid in top:
        chunk = stored[cid]
        passages.append(
            Passage(
                chunk_id=cid,
                doc_id=chunk.doc_id,
                path=chunk.path,
                page=chunk.page,
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                text=chunk.text,
                score=fused[cid],
                similarity=similarity.get(cid),
                bm25=bm25.get(cid),
                vector_rank=vector_rank.get(cid),
                keyword_rank=keyword_rank.get(cid),
            )
        )
    return passages


def _similarities(store, collection: str, qvec, ids: list[str]) -> dict[str, float]:
    import numpy as np

    got = store.collection(collection).get(ids=ids, include=["embeddings"])
    out = {}
    for cid, vec in zip(got["ids"], got["embeddings"], strict=True):
        out[cid] = float(np.dot(np.asarray(vec, dtype=np.float32), qvec))
    return out
