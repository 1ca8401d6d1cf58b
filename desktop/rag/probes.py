"""Retrieval health of a collection: can Sprig find things in *these* documents?

Sprig asks itself sample questions made from the collection's own passages and checks
whether its search (the library's hybrid search, the same one answers use) brings the
source page back among the first five passages. The result reads "Sprig finds the right
page for N of M sample questions", with the documents that do worst and a cause guessed
from evidence in their text.

Making a question needs no model, so a check takes seconds:

* a few passages per document (``PER_DOCUMENT``; fewer in a collection of more than
  ``MAX_PROBES // PER_DOCUMENT`` documents), one from each equal stretch of its chunks,
  picked with a seed made of the document's content hash: the same document gets the same
  questions every time, whatever else is in the collection;
* from each passage its most distinctive sentence (the one whose words are rarest in its
  document); a table row stands in for a sentence where there is none;
* the question keeps only words a person would type (dictionary words), drops the numbers
  and the rarest word (the "answer"), and leaves out a few more words at random, so it
  shares some but not all of its words with the page. A stretch of a document without one
  sentence of three dictionary words (garbled text, a bad scan) gives a question that
  cannot be asked: it counts as missed.

A question is answered right when a passage of the same document and page (for a file
without pages: a passage overlapping the sentence) is among the top ``TOP_K``.

For a document that does badly the cause is guessed from what its text shows:
duplicates (a missed question's sentence is found word for word, or nearly, in another
document or on another page among the results), scanned (pages read by OCR, or little text a page), garbled extraction
(many tokens that are neither dictionary words, names nor numbers), tables (many short
lines of numbers). The dictionary is the embedding model's own vocabulary (installed with
it), with common endings.

A report is kept in the catalog's meta table under the collection's name, with a key made
of its documents' content hashes, the embedding model and ``PROBE_VERSION``: it is reused
until the collection changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from desktop.rag.types import CancelToken

PROBE_VERSION = 1  # raise when questions or the scoring change: cached reports are redone
PER_DOCUMENT = 4  # sample questions per document
MAX_PROBES = 240  # in all; a bigger collection gets fewer per document (at least one)
TOP_K = 5
SEED = 11
WORST = 5  # documents named in a report
MAX_QUERY_WORDS = 16
DROP_SHARE = 0.2  # of the question's words left out at random
META_PREFIX = "retrieval_health:"

# evidence thresholds (see the README's figures for what clean collections show)
GARBLED_SHARE = 0.3  # tokens that are neither words nor numbers
TABLE_SHARE = 0.4  # lines that are short rows of numbers
LITTLE_TEXT = 400  # characters a page
NEAR_SHARE = 0.8  # a page holding this share of a missed sentence's words holds nearly the same text
NEAR_MIN_WORDS = 8  # ... when the sentence has at least this many words (short ones match anywhere)
OCR_SHARE = 0.5  # pages read by OCR

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+(?=\s|$)|\n|$)")
_DIGIT = re.compile(r"\d")
# control, format and private-use characters, the replacement character: signs of a bad font map
_ODD_CHAR = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2060-\u206f\ue000-\uf8ff\ufeff\ufffd]")
_STRIP = "\"'“”‘’()[]{}<>.,;:!?*•-–—/|%$€£#"
_SUFFIXES = ("'s", "’s", "ies", "es", "s", "ed", "ing", "ly", "ment", "ments", "ness", "al", "er", "ers", "ity")
_STOP = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if in
    into is it its of on or our so than that the their them then there these they this to
    was we were what when where which who whom whose why will with would you your about
    after also any between both each more most other some such only over under up not no""".split()
)


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class Probe:
    """One sample question and where its answer is: the sentence's span in the page text
    (in the file's text for a file without pages)."""

    path: str
    doc_id: int
    page: int | None
    char_start: int
    char_end: int
    sentence: str
    query: str
    from_table: bool = False  # made from a row of numbers, or in a passage that is mostly such rows


@dataclass(frozen=True)
class Outcome:
    """What the search did with a probe: the rank of the first passage from the source page
    (None: not in the top ``TOP_K``), where the first passage came from, and, when missed,
    another page among the results holding the probe's sentence word for word (``overlap``
    1.0) or nearly (``overlap``: the share of the sentence's words that page holds)."""

    probe: Probe
    rank: int | None
    top_path: str = ""
    top_page: int | None = None
    duplicate_path: str = ""
    duplicate_page: int | None = None
    overlap: float = 0.0

    @property
    def found(self) -> bool:
        return self.rank is not None


@dataclass(frozen=True)
class Signs:
    """What a document's text shows (all shares are 0..1)."""

    words: int = 0  # tokens counted (numbers aside)
    odd_share: float = 0.0  # tokens that are neither dictionary words, names nor numbers
    table_share: float = 0.0  # lines that are short rows of numbers
    chars_per_page: float | None = None  # None for a file without pages
    pages: int = 0
    ocr_pages: int = 0  # pages read by OCR
    duplicate_share: float = 0.0  # sentences also found in another document
    duplicate_of: str = ""  # the document sharing most of them


@dataclass(frozen=True)
class DocumentHealth:
    path: str
    probes: int
    found: int
    code: str = ""  # duplicates | repeated | scanned | garbled | tables | unclear ("" when all found)
    reason: str = ""
    signs: Signs = field(default_factory=Signs)

    @property
    def recall(self) -> float | None:
        return self.found / self.probes if self.probes else None

    def as_json(self) -> dict:
        return {"path": self.path, "recall": None if self.recall is None else round(self.recall, 3),
                "probes": self.probes, "found": self.found, "code": self.code, "reason": self.reason,
                "signs": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self.signs).items()}}

    @classmethod
    def from_json(cls, data: dict) -> DocumentHealth:
        return cls(data["path"], int(data["probes"]), int(data["found"]), data.get("code", ""),
                   data.get("reason", ""), Signs(**data.get("signs", {})))


@dataclass
class HealthReport:
    collection: str
    probes: int = 0
    found: int = 0
    documents: list[DocumentHealth] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    key: str = ""
    seconds: float = 0.0
    created: float = 0.0
    cached: bool = False

    @property
    def recall(self) -> float | None:
        return self.found / self.probes if self.probes else None

    @property
    def message(self) -> str:
        if not self.probes:
            return "No sample questions could be made: the collection has no indexed text yet."
        return f"Sprig finds the right page for {self.found} of {self.probes} sample questions."

    @property
    def worst(self) -> list[DocumentHealth]:
        """Documents that missed questions, worst first (at most ``WORST``)."""
        weak = [d for d in self.documents if d.probes and d.found < d.probes]
        weak.sort(key=lambda d: (d.recall, -d.probes, d.path))
        return weak[:WORST]

    def as_json(self) -> dict:
        return {
            "collection": self.collection,
            "message": self.message,
            "probes": self.probes,
            "found": self.found,
            "recall_at_5": None if self.recall is None else round(self.recall, 4),
            "worst_documents": [d.as_json() for d in self.worst],
            "documents": [d.as_json() for d in self.documents],
            "questions": [_outcome_json(o) for o in self.outcomes],
            "seconds": round(self.seconds, 2),
            "created": self.created,
            "cached": self.cached,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, data: dict) -> HealthReport:
        return cls(
            collection=data["collection"], probes=int(data["probes"]), found=int(data["found"]),
            documents=[DocumentHealth.from_json(d) for d in data.get("documents", [])],
            outcomes=[_outcome_from_json(o) for o in data.get("questions", [])],
            key=data.get("key", ""), seconds=float(data.get("seconds", 0.0)),
            created=float(data.get("created", 0.0)),
        )


def _outcome_json(o: Outcome) -> dict:
    p = o.probe
    return {"question": p.query, "path": p.path, "page": p.page, "char_start": p.char_start,
            "char_end": p.char_end, "sentence": p.sentence, "from_table": p.from_table,
            "found": o.found, "rank": o.rank, "top_path": o.top_path, "top_page": o.top_page,
            "duplicate_path": o.duplicate_path, "duplicate_page": o.duplicate_page, "overlap": round(o.overlap, 3)}


def _outcome_from_json(d: dict) -> Outcome:
    probe = Probe(d["path"], -1, d.get("page"), int(d["char_start"]), int(d["char_end"]), d.get("sentence", ""),
                  d["question"], bool(d.get("from_table", False)))
    return Outcome(probe, d.get("rank"), d.get("top_path", ""), d.get("top_page"),
                   d.get("duplicate_path", ""), d.get("duplicate_page"), float(d.get("overlap", 0.0)))


@dataclass(frozen=True)
class HealthProgress:
    """``stage`` is read (the passages), probe (``done`` of ``total`` questions asked) or done."""

    stage: str
    done: int = 0
    total: int = 0
    path: str = ""

    @property
    def fraction(self) -> float:
        if self.stage == "done":
            return 1.0
        return self.done / self.total if self.total else 0.0


ProgressFn = Callable[[HealthProgress], None]


# ------------------------------------------------------------------ words
@lru_cache(maxsize=4)
def _vocabulary(model_dir: str) -> frozenset[str]:
    from desktop.rag.chunking import load_tokenizer

    vocab = load_tokenizer(model_dir).get_vocab()
    return frozenset(w for w in vocab if w.isalpha() and not w.startswith("##") and len(w) > 1 or w in ("a", "i"))


class Dictionary:
    """Words a person would type: the embedding model's vocabulary, with common endings."""

    def __init__(self, words: Iterable[str]):
        self.words = frozenset(words)

    @classmethod
    def of(cls, embedder) -> Dictionary:
        return cls(_vocabulary(str(embedder.model_dir)))

    def __contains__(self, word: str) -> bool:
        w = _fold(word)
        if w in self.words:
            return True
        for suffix in _SUFFIXES:
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                stem = w[: -len(suffix)]
                if stem in self.words or stem + "e" in self.words or (suffix == "ies" and stem + "y" in self.words):
                    return True
        return False


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _is_name(word: str) -> bool:
    """Capitalised or all capitals, letters only: a name or an acronym ("Rollo", "GAAP")."""
    return word.isalpha() and word[0].isupper() and (word[1:].islower() or word.isupper())


def _kind(token: str, words: Dictionary) -> str:
    """number | word | name | odd, for one whitespace-separated token."""
    t = token.strip(_STRIP)
    if not t:
        return "number" if _DIGIT.search(token) else "skip"
    if "(cid:" in token or _ODD_CHAR.search(t):
        return "odd"
    if not any(ch.isalpha() for ch in t):
        return "number" if _DIGIT.search(t) else "skip"
    if _DIGIT.search(t):  # "10-K", "Q4", "2Q23": codes are normal in real documents
        return "number" if len(t) <= 8 else "odd"
    parts = [p for p in re.split(r"[-'’./&]", t) if p]
    if not all(p.isalpha() for p in parts):
        return "odd"  # symbols inside a word: mojibake ("Ã©", "â€™")
    if len(parts) == 1 and len(t) == 1:
        return "word" if t.lower() in ("a", "i") else "odd"  # s p a c e d - o u t letters
    if all(p in words for p in parts):
        return "word"
    if all(_is_name(p) for p in parts):
        return "name"
    return "odd"


# ------------------------------------------------------------------ text signs
def _norm_sentence(text: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(text))


def _is_table_line(line: str) -> bool:
    stripped = line.strip()
    if not stripped or len(stripped) > 80:
        return False
    numbers = re.findall(r"\(?[$€£]?\d[\d,.]*%?\)?", stripped)
    letters = sum(ch.isalpha() for ch in stripped)
    digits = sum(ch.isdigit() for ch in stripped)
    return bool(numbers) and (digits >= letters * 0.5 or len(numbers) >= 2 and len(_WORD.findall(stripped)) <= 10)


def _signs(chunks: list, words: Dictionary) -> tuple[int, int, int, int]:
    """(tokens counted, odd tokens, lines, table lines) of one document's chunks."""
    counted = odd = lines = table = 0
    for chunk in chunks:
        for token in chunk.text.split():
            kind = _kind(token, words)
            if kind in ("word", "name"):
                counted += 1
            elif kind == "odd":
                counted += 1
                odd += 1
        for line in chunk.text.splitlines():
            if line.strip():
                lines += 1
                table += _is_table_line(line)
    return counted, odd, lines, table


def _table_share(text: str) -> float:
    lines = [line for line in text.splitlines() if line.strip()]
    return sum(_is_table_line(line) for line in lines) / len(lines) if lines else 0.0


def _chars_per_page(chunks: list, pages: int) -> float | None:
    ends: dict[int, int] = {}
    for c in chunks:
        if c.page is None:
            return None
        ends[c.page] = max(ends.get(c.page, 0), c.char_end)
    return sum(ends.values()) / max(pages, len(ends), 1)


def _ocr_pages(ocr_dir: Path | None, content_hash: str | None) -> int:
    if ocr_dir is None or not content_hash:
        return 0
    path = Path(ocr_dir) / f"{content_hash}.jsonl"
    try:
        with open(path, encoding="utf-8") as handle:
            return max(0, sum(1 for line in handle if line.endswith("\n")) - 1)  # less the header
    except OSError:
        return 0


def _sentences(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences (or lines) of ``text``, trimmed."""
    spans = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        if piece:
            spans.append((start + lead, start + lead + len(piece)))
    return spans


def _duplicates(groups: dict[int, list]) -> dict[int, tuple[float, int | None]]:
    """Per document: (share of its long sentences also in another document, that document)."""
    owners: dict[str, set[int]] = {}
    doc_sentences: dict[int, set[str]] = {}
    for doc_id, chunks in groups.items():
        found: set[str] = set()
        for c in chunks:
            for s, e in _sentences(c.text):
                norm = _norm_sentence(c.text[s:e])
                if norm.count(" ") >= 7:
                    found.add(norm)
        doc_sentences[doc_id] = found
        for norm in found:
            owners.setdefault(norm, set()).add(doc_id)
    out: dict[int, tuple[float, int | None]] = {}
    for doc_id, found in doc_sentences.items():
        shared: dict[int, int] = {}
        dup = 0
        for norm in found:
            others = owners[norm] - {doc_id}
            if others:
                dup += 1
                for other in others:
                    shared[other] = shared.get(other, 0) + 1
        best = max(shared, key=lambda d: (shared[d], -d)) if shared else None
        out[doc_id] = (dup / len(found) if found else 0.0, best)
    return out


# ------------------------------------------------------------------ questions
def _idf(chunks: list) -> dict[str, float]:
    """How rare each word is among one document's chunks (its own: adding another document
    leaves this document's questions as they were)."""
    df: dict[str, int] = {}
    for c in chunks:
        for w in {w.lower() for w in _WORD.findall(c.text)}:
            df[w] = df.get(w, 0) + 1
    n = len(chunks)
    return {w: math.log((n + 1) / (k + 1)) + 1.0 for w, k in df.items()}


def _usable(word: str, words: Dictionary) -> bool:
    if _DIGIT.search(word) or word.lower() in _STOP:
        return False
    return word in words


def _best_sentence(chunk, words: Dictionary, idf: dict[str, float]) -> tuple[int, int, bool] | None:
    """The span (in the chunk's text) of its most distinctive sentence, and whether it is a
    table row. None if no sentence has three words a person would type."""
    best, best_score = None, 0.0
    for s, e in _sentences(chunk.text):
        piece = chunk.text[s:e]
        tokens = _WORD.findall(piece)
        usable = [w for w in tokens if _usable(w, words)]
        if len(usable) < 3:
            continue
        table = _is_table_line(piece)
        distinct = {w.lower() for w in usable}
        # rare words make a sentence distinctive; very long ones are cut to a question's length
        score = sum(sorted((idf.get(w, 1.0) for w in distinct), reverse=True)[:MAX_QUERY_WORDS])
        score *= 0.5 if table else 1.0
        if len(usable) < 5:
            score *= 0.6
        if score > best_score:
            best, best_score = (s, e, table), score
    return best


def make_query(sentence: str, words: Dictionary, idf: dict[str, float], rnd: random.Random) -> str:
    """The question a person might type for ``sentence``: its typeable words, less the rarest
    (the "answer") and a few at random, numbers left out, at most ``MAX_QUERY_WORDS``."""
    tokens = [w for w in _WORD.findall(sentence) if not _DIGIT.search(w) and w in words]
    content = [i for i, w in enumerate(tokens) if w.lower() not in _STOP]
    drop: set[int] = set()
    if len(content) >= 4:
        rarest = max(content, key=lambda i: (idf.get(tokens[i].lower(), 1.0), -i))
        drop.add(rarest)
        rest = [i for i in content if i != rarest]
        drop.update(rnd.sample(rest, int(len(rest) * DROP_SHARE)))
    kept = [w for i, w in enumerate(tokens) if i not in drop]
    while kept and kept[0].lower() in _STOP:
        kept.pop(0)
    # a long sentence: keep the stretch with the most content words
    if len(kept) > MAX_QUERY_WORDS:
        starts = range(len(kept) - MAX_QUERY_WORDS + 1)
        best = max(starts, key=lambda s: (sum(w.lower() not in _STOP for w in kept[s : s + MAX_QUERY_WORDS]), -s))
        kept = kept[best : best + MAX_QUERY_WORDS]
    return " ".join(kept)


def _strata(n: int, k: int) -> list[range]:
    """``k`` consecutive, nearly equal stretches of ``range(n)``."""
    k = max(1, min(k, n))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(k) if bounds[i] < bounds[i + 1]]


def sampled_documents(groups: dict[int, list], content_hashes: dict[int, str], max_probes: int = MAX_PROBES,
                      seed: int = SEED) -> list[int]:
    """The documents that get questions: all of them, or ``max_probes`` picked with the seed."""
    doc_ids = sorted(groups, key=lambda d: (content_hashes.get(d) or "", d))
    if len(doc_ids) > max_probes:
        pick = random.Random(f"{seed}:documents")
        doc_ids = sorted(pick.sample(doc_ids, max_probes), key=lambda d: (content_hashes.get(d) or "", d))
    return doc_ids


def make_probes(groups: dict[int, list], content_hashes: dict[int, str], words: Dictionary,
                per_document: int = PER_DOCUMENT, max_probes: int = MAX_PROBES, seed: int = SEED) -> list[Probe]:
    """Sample questions, ``per_document`` from each document (fewer when the collection is large),
    one from each equal stretch of its chunks. Each document's choice depends only on its own
    content and the seed, so adding a document leaves the others' questions as they were."""
    doc_ids = sampled_documents(groups, content_hashes, max_probes, seed)
    per = max(1, min(per_document, max_probes // max(1, len(doc_ids))))
    probes: list[Probe] = []
    for doc_id in doc_ids:
        chunks = groups[doc_id]
        idf = _idf(chunks)
        rnd = random.Random(f"{seed}:{content_hashes.get(doc_id) or doc_id}")
        for stretch in _strata(len(chunks), per):
            order = list(stretch)
            rnd.shuffle(order)
            for i in order:  # a stretch of tables or garbled pages may need a few tries
                chunk = chunks[i]
                found = _best_sentence(chunk, words, idf)
                if found is None:
                    continue
                s, e, table = found
                table = table or _table_share(chunk.text) >= TABLE_SHARE
                sentence = chunk.text[s:e]
                query = make_query(sentence, words, idf, rnd)
                probes.append(Probe(chunk.path, doc_id, chunk.page, chunk.char_start + s, chunk.char_start + e,
                                    sentence, query, table))
                break
            else:
                # not one sentence of words a person would type in this stretch: a question about
                # it could not match its words, so it counts as a question missed
                chunk = chunks[order[0]]
                probes.append(Probe(chunk.path, doc_id, chunk.page, chunk.char_start, chunk.char_end,
                                    chunk.text[:200], ""))
    return probes


# ------------------------------------------------------------------ asking
def ask(library, probe: Probe, collection: str, k: int = TOP_K) -> Outcome:
    """Search for ``probe.query`` as an answer would, and see where its page ranks."""
    passages = library.search(probe.query, k=k, collection=collection) if probe.query.strip() else []
    rank = None
    for i, p in enumerate(passages, start=1):
        if p.doc_id != probe.doc_id:
            continue
        if probe.page is not None and p.page == probe.page or (
                probe.page is None and p.char_start < probe.char_end and p.char_end > probe.char_start):
            rank = i
            break
    top = passages[0] if passages else None
    dup_path, dup_page, overlap = "", None, 0.0
    if rank is None:
        sentence = _norm_sentence(probe.sentence)
        content = _content_words(probe.sentence)
        for p in passages:
            if sentence and sentence in _norm_sentence(p.text):
                dup_path, dup_page, overlap = p.path, p.page, 1.0
                break
            if len(content) >= NEAR_MIN_WORDS:
                share = len(content & _content_words(p.text)) / len(content)
                if share >= NEAR_SHARE and share > overlap:
                    dup_path, dup_page, overlap = p.path, p.page, share
    return Outcome(probe, rank, top.path if top else "", top.page if top else None, dup_path, dup_page, overlap)


def _content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and not _DIGIT.search(w)}


# ------------------------------------------------------------------ causes
def _pct(share: float) -> str:
    return f"{round(share * 100)}%"


def guess_reason(path: str, outcomes: list[Outcome], signs: Signs) -> tuple[str, str]:
    """(code, reason) for a document that missed some of its questions."""
    from desktop.display import display_name

    missed = [o for o in outcomes if not o.found]
    if not missed:
        return "", ""
    unaskable = [o for o in missed if not o.probe.query]
    elsewhere = [o for o in missed if o.duplicate_path and o.duplicate_path != path]
    same_doc = [o for o in missed if o.duplicate_path == path]
    if len(elsewhere) * 2 >= len(missed):
        other = max({o.duplicate_path for o in elsewhere}, key=lambda p: sum(o.duplicate_path == p for o in elsewhere))
        if all(o.overlap >= 1.0 for o in elsewhere):
            what = "the same text"
        else:
            what = "the same or nearly the same sentence (wording several documents share)"
        return "duplicates", (f"duplicates: {len(elsewhere)} of {len(missed)} missed questions found {what} "
                              f"in {display_name(other)}"
                              + (f"; {_pct(signs.duplicate_share)} of its sentences are also there"
                                 if signs.duplicate_share >= 0.1 else ""))
    if len(same_doc) * 2 >= len(missed):
        what = "the same words" if all(o.overlap >= 1.0 for o in same_doc) else "nearly the same words"
        return "repeated", (f"repeated text: {len(same_doc)} of {len(missed)} missed questions found {what} on "
                            "another of its pages")
    if signs.pages and signs.ocr_pages >= OCR_SHARE * signs.pages:
        return "scanned", f"scanned: {signs.ocr_pages} of {signs.pages} pages were read by OCR"
    if signs.chars_per_page is not None and signs.chars_per_page < LITTLE_TEXT:
        return "scanned", (f"little text: about {round(signs.chars_per_page)} characters a page "
                           "(scanned or mostly images?)")
    if signs.odd_share >= GARBLED_SHARE:
        return "garbled", (f"garbled extraction: {_pct(signs.odd_share)} of its words are neither dictionary "
                           "words, names nor numbers")
    if len(unaskable) * 2 >= len(missed):
        return "garbled", (f"garbled or unreadable text: {len(unaskable)} of its {len(outcomes)} sample passages "
                           "hold no sentence of dictionary words to ask about")
    tables = [o for o in missed if o.probe.from_table]
    if signs.table_share >= TABLE_SHARE:
        return "tables", (f"tables: {_pct(signs.table_share)} of its lines are short rows of numbers, which "
                          "share few words with a question")
    if tables and len(tables) * 2 >= len(missed):
        return "tables", (f"tables: {len(tables)} of its {len(missed)} missed questions were made from tables, "
                          "whose rows share few words with a question")
    if signs.duplicate_share >= 0.3:
        return "duplicates", (f"duplicates: {_pct(signs.duplicate_share)} of its sentences are also in "
                              f"{display_name(signs.duplicate_of)}")
    tops = [o for o in missed if o.top_path]
    where = ""
    if tops:
        o = tops[0]
        if o.top_path == path:
            where = " (other parts of the same document"
        else:
            where = f" (e.g. {display_name(o.top_path)}"
        where += (f", page {o.top_page}" if o.top_page else "") + ")"
    return "unclear", f"no sign of a cause in the text: other passages matched its questions better{where}"


# ------------------------------------------------------------------ the check
def collection_key(catalog, collection: str, model_id: str) -> str:
    """Changes whenever a document of the collection is added, removed or changed."""
    docs = sorted((d.path, d.content_hash or "") for d in catalog.documents(collection, status="indexed"))
    blob = json.dumps([PROBE_VERSION, model_id, PER_DOCUMENT, MAX_PROBES, TOP_K, SEED, docs])
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_report(catalog, collection: str, model_id: str) -> HealthReport | None:
    """The last report of ``collection`` if the collection has not changed since; else None."""
    raw = catalog.get_meta(META_PREFIX + collection)
    if not raw:
        return None
    try:
        report = HealthReport.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None
    if report.key != collection_key(catalog, collection, model_id):
        return None
    report.cached = True
    return report


def check_collection(library, collection: str = "default", progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None, refresh: bool = False,
                     per_document: int = PER_DOCUMENT, max_probes: int = MAX_PROBES) -> HealthReport:
    """Ask the collection its sample questions and report (or reuse an unchanged collection's
    report, unless ``refresh``). Raises ``Cancelled`` when ``cancel`` is set."""
    progress = progress or (lambda p: None)
    cancel = cancel or CancelToken()
    catalog = library.catalog
    model_id = library.embedder.model_id
    default_sample = (per_document, max_probes) == (PER_DOCUMENT, MAX_PROBES)
    if not refresh and default_sample:
        cached = cached_report(catalog, collection, model_id)
        if cached is not None:
            progress(HealthProgress("done", cached.probes, cached.probes))
            return cached
    started = time.perf_counter()
    key = collection_key(catalog, collection, model_id)  # before reading: a change meanwhile shows next time
    progress(HealthProgress("read"))
    docs = {d.id: d for d in catalog.documents(collection, status="indexed")}
    groups: dict[int, list] = {}
    for batch in catalog.iter_chunks(collection):
        cancel.raise_if_cancelled()
        for c in batch:
            if c.doc_id in docs:
                groups.setdefault(c.doc_id, []).append(c)
    for chunks in groups.values():
        chunks.sort(key=lambda c: c.seq)
    words = Dictionary.of(library.embedder)
    hashes = {d: docs[d].content_hash or "" for d in groups}
    probes = make_probes(groups, hashes, words, per_document, max_probes)
    outcomes: list[Outcome] = []
    for i, probe in enumerate(probes):
        cancel.raise_if_cancelled()
        progress(HealthProgress("probe", i, len(probes), probe.path))
        outcomes.append(ask(library, probe, collection))
    cancel.raise_if_cancelled()
    duplicates = _duplicates(groups)
    ocr_dir = getattr(getattr(library, "paths", None), "ocr", None)
    by_doc: dict[int, list[Outcome]] = {}
    for o in outcomes:
        by_doc.setdefault(o.probe.doc_id, []).append(o)
    sampled = sampled_documents(groups, hashes, max_probes)
    documents = []
    for doc_id in sorted(sampled, key=lambda d: docs[d].path):
        doc = docs[doc_id]
        chunks = groups.get(doc_id, [])
        counted, odd, lines, table = _signs(chunks, words)
        dup_share, dup_doc = duplicates.get(doc_id, (0.0, None))
        signs = Signs(
            words=counted, odd_share=odd / counted if counted else 0.0, table_share=table / lines if lines else 0.0,
            chars_per_page=_chars_per_page(chunks, doc.pages), pages=doc.pages,
            ocr_pages=_ocr_pages(ocr_dir, doc.content_hash), duplicate_share=dup_share,
            duplicate_of=docs[dup_doc].path if dup_doc in docs else "",
        )
        mine = by_doc.get(doc_id, [])
        code, reason = guess_reason(doc.path, mine, signs)
        documents.append(DocumentHealth(doc.path, len(mine), sum(o.found for o in mine), code, reason, signs))
    report = HealthReport(collection, len(outcomes), sum(o.found for o in outcomes), documents, outcomes, key,
                          time.perf_counter() - started, time.time())
    progress(HealthProgress("done", len(outcomes), len(outcomes)))
    if default_sample:
        catalog.set_meta(META_PREFIX + collection, json.dumps(report.as_json(), ensure_ascii=False))
    return report
