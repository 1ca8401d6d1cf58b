"""Plain data passed between the core and its callers (the window, the CLI, the benchmarks)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from desktop.display import display_name


def location_of(path: str, page: int | None, unnamed: str = "") -> str:
    """"name, page N" for a passage or a saved source (a file without pages: its name),
    safe to show; ``unnamed`` when there is no path at all."""
    name = display_name(path) if path else unnamed
    return f"{name}, page {page}" if page else name


@dataclass(frozen=True)
class PageText:
    """The text of one page (1-based ``number``) or of a whole non-paged file (``number`` None)."""

    number: int | None
    text: str


@dataclass(frozen=True)
class Chunk:
    """A piece of a page, small enough for the embedder, with its location in the page text."""

    seq: int
    page: int | None
    char_start: int
    char_end: int
    text: str


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with where it came from and how it scored."""

    chunk_id: str
    doc_id: int
    path: str
    page: int | None
    char_start: int
    char_end: int
    text: str
    score: float  # fused score (reciprocal rank fusion)
    similarity: float | None = None  # cosine similarity of the query and the chunk
    bm25: float | None = None  # keyword score (higher is better)
    vector_rank: int | None = None
    keyword_rank: int | None = None
    # the heading above the passage on its page (a section title, a function's name): shown
    # to the model with the passage and checked like it, but not part of the cited span
    context: str = ""

    @property
    def evidence_text(self) -> str:
        """What the model is shown for this passage: its heading, then its text."""
        return f"{self.context} \u2014 {self.text}" if self.context else self.text

    @property
    def location(self) -> str:
        return location_of(self.path, self.page)

    def as_json(self) -> dict:
        """What ``sprig search --json`` prints for a passage."""
        return {
            "path": self.path,
            "page": self.page,
            "text": self.text,
            "score": self.score,
            "similarity": self.similarity,
            "bm25": self.bm25,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "chunk_id": self.chunk_id,
        }


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Source:
    """What a saved answer keeps about a passage it cites (or, when it abstained, one it came
    near), so its sources show and open again after a restart, in the window and an export."""

    n: int | None = None  # the citation number in the answer; None for a nearest passage
    path: str = ""
    page: int | None = None
    char_start: int = 0
    char_end: int = 0
    text: str = ""
    heading: str | None = None  # the heading the line sits under
    score: float | None = None  # fused rank score
    similarity: float | None = None
    bm25: float | None = None
    matched: bool = False  # the model gave no citation; matched to the answer by shared words

    @classmethod
    def from_passage(cls, passage: Passage, n: int | None = None, matched: bool = False) -> Source:
        return cls(n=n, path=passage.path, page=passage.page, char_start=passage.char_start,
                   char_end=passage.char_end, text=passage.text, heading=passage.context or None,
                   score=passage.score, similarity=passage.similarity, bm25=passage.bm25, matched=matched)

    @property
    def location(self) -> str:
        return location_of(self.path, self.page)

    def as_json(self) -> dict:
        return asdict(self)  # the keys in field order, as the chat store has always written them

    @classmethod
    def from_json(cls, d: dict) -> Source:
        """A saved source; a row from an older version may lack keys (heading, matched, scores)."""
        return cls(
            n=_int(d.get("n"), None),
            path=str(d.get("path") or ""),
            page=_int(d.get("page"), None),
            char_start=_int(d.get("char_start"), 0) or 0,
            char_end=_int(d.get("char_end"), 0) or 0,
            text=str(d.get("text") or ""),
            heading=str(d.get("heading") or "") or None,
            score=_float(d.get("score")),
            similarity=_float(d.get("similarity")),
            bm25=_float(d.get("bm25")),
            matched=bool(d.get("matched")),
        )


@dataclass(frozen=True)
class Progress:
    """One step of a long job. ``stage`` is one of: scan, parse, prepare (the embedder built
    once per data folder), embed, store, done, skip, fail."""

    stage: str
    file_index: int  # 1-based index of the current file
    file_count: int
    path: str = ""
    pages: int = 0
    chunks: int = 0
    chunks_done: int = 0
    message: str = ""

    @property
    def fraction(self) -> float:
        if self.file_count <= 0:
            return 1.0
        inner = self.chunks_done / self.chunks if self.chunks else 0.0
        return min(1.0, (self.file_index - 1 + inner) / self.file_count)


@dataclass
class IndexSummary:
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unchanged
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled

    def merge(self, other: IndexSummary) -> None:
        """Add another job's outcome to this one (several collections, start-up steps)."""
        self.indexed.extend(other.indexed)
        self.skipped.extend(other.skipped)
        self.removed.extend(other.removed)
        self.failed.update(other.failed)
        self.pages += other.pages
        self.chunks += other.chunks
        self.cancelled |= other.cancelled


class CancelToken:
    """Set by the caller (Cancel button, Ctrl+C, window closing); checked by the core."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            from desktop.errors import Cancelled

            raise Cancelled("cancelled")
