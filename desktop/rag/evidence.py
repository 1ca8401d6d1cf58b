"""Evidence a small model can't miss: the sentences of the retrieved passages that answer.

Four whole chunks bury the one sentence that matters among ~600 tokens, and a
half-billion-parameter model then says "the documents don't say". Instead, the top
passages of hybrid retrieval are split into sentences, each sentence is scored against
the question (its embedding's cosine and how many of the question's key terms it holds,
with its neighbours), and the best few, each with the sentence before it for context,
become a short numbered evidence block. Every line keeps its file, page and exact
character span, so a citation points at a sentence a user can check.

Documents that are not prose get the same care: a line break that ends something (a
sentence, a heading, a list item, a signature) ends a sentence; a list item is a line of its
own; and a line carries the heading it sits under on its page (a section title, the name of
the function a manual describes), which counts for matching and is shown with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from desktop.rag.types import Passage

# a sentence ends at . ! ? (not inside "e.g." or "3.5") followed by space, or at a line break
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•▪◦]|\d+[.)]\s))")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|etc|vs|Mr|Mrs|Ms|Dr|Prof|St|No|Fig|Inc|Ltd|Co|Corp|approx|cf|al|Jr|Sr"
                     r"|(?-i:[A-Z]))\.$",  # ... and a capital's initial, as in "Harold L. Neal"
                     re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")  # a command-line option: -W, --verify
STOPWORDS = frozenset(
    """a an and are as at be been being but by can could did do does doing for from had has have
    how i if in into is it its of on or our so than that the their them then there these they this
    to was we were what when where which who whom whose why will with would you your about after
    also any between both each more most other some such only over under up many much name named
    called kind type long often usually did does do one ones""".split()
)
MAX_SENTENCE_CHARS = 400


@dataclass(frozen=True)
class Sentence:
    """A sentence of a retrieved passage, located in its page's text."""

    passage: Passage
    index: int  # order inside the passage
    char_start: int  # in the page text (like Passage.char_start)
    char_end: int
    text: str


@dataclass(frozen=True)
class EvidenceLine:
    """One numbered line of the evidence block: a best sentence, with the one before it."""

    n: int
    passage: Passage
    char_start: int
    char_end: int
    text: str
    score: float  # the best sentence's combined score
    cosine: float
    coverage: float  # share of the question's key terms in the line (weighted by rarity)
    heading: str = ""  # the heading the line sits under on its page, when it is not in the line

    @property
    def path(self) -> str:
        return self.passage.path

    @property
    def page(self) -> int | None:
        return self.passage.page

    @property
    def location(self) -> str:
        return self.passage.location


@dataclass(frozen=True)
class Evidence:
    lines: list[EvidenceLine]
    top_similarity: float  # best passage cosine (what the old threshold used)
    best_cosine: float  # best sentence cosine
    best_coverage: float  # key-term coverage of the best line
    question_terms: int


def split_sentences(passage: Passage) -> list[Sentence]:
    """Sentences of a passage with their spans in the page text; long ones are cut at ; or words."""
    text = passage.text
    out: list[Sentence] = []
    start = 0
    pieces: list[tuple[int, int]] = []
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if _ABBREV.search(text[max(start, end - 8):end]):
            continue
        pieces.append((start, end))
        start = match.end()
    pieces.append((start, len(text)))
    pieces = [span for s, e in pieces for span in _split_lines(text, s, e)]
    for s, e in pieces:
        for cs, ce in _cut_long(text, s, e):
            raw = text[cs:ce]
            lead = len(raw) - len(raw.lstrip())
            trail = len(raw.rstrip())
            if trail - lead < 2:
                continue
            out.append(Sentence(passage, len(out), passage.char_start + cs + lead,
                                passage.char_start + cs + trail, raw[lead:trail]))
    return out


def _split_lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Line breaks that end something split too: a block of short lines (a form, a table, a
    list, a cover page) at each line; otherwise after a line that ends a sentence, and after
    a line well short of the text's width (a heading, a list item, a signature, a label)."""
    block = text[start:end]
    lines = block.split("\n")
    if len(lines) < 2:
        return [(start, end)]
    if len(lines) >= 3 and sum(len(x) for x in lines) / len(lines) < 60:
        cuts = range(len(lines) - 1)
    else:
        width = line_width(text)
        cuts = [i for i, line in enumerate(lines[:-1])
                if line.rstrip().endswith((".", "!", "?")) or len(line.strip()) < SHORT_LINE * width]
    spans = []
    pos = start
    first = start
    for i, line in enumerate(lines):
        pos += len(line) + 1
        if i in cuts:
            spans.append((first, pos - 1))
            first = pos
    spans.append((first, end))
    return spans


SHORT_LINE = 0.7  # a line shorter than this share of the text's width ends a block
_HEADING_END = frozenset(".,;:!?")
_BULLET = re.compile(r"[•▪◦]|[-*–—]\s")  # "- item", but "-iname pattern" names an option
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*")


def _is_item(line: str) -> bool:
    """A list item: a bullet, or a dash with a space after it."""
    return bool(_BULLET.match(line.lstrip()))


def line_width(text: str) -> int:
    """The width of the text's wrapped lines (their longest, at least 40 characters)."""
    return max([40] + [len(x.strip()) for x in text.split("\n")])


def _is_heading(line: str, above: str | None, width: int) -> bool:
    """A short line with no sentence punctuation that does not continue the line above it."""
    line = line.strip()
    if not 2 <= len(line) <= 80 or len(line) >= SHORT_LINE * width or line[-1] in _HEADING_END:
        return False
    if _is_item(line) or not any(c.isalpha() for c in line) or len(_NUMBER.findall(line)) >= 2:
        return False  # a list item, a page number, a table row
    if above is None or not above.strip():
        return True
    above = above.strip()
    return len(above) < SHORT_LINE * width or above[-1] in ".!?:"


def _label_like(line: str) -> bool:
    """Not prose: no sentence end, few function words (a signature, a label, a term)."""
    if line[-1] in ".!?" or ". " in line:
        return False
    words = _WORD.findall(line.lower())
    return bool(words) and sum(w in STOPWORDS for w in words) < 0.25 * len(words)


def heading_above(before: str, width: int | None = None, max_chars: int = 120,
                  running: Callable[[str], bool] | None = None) -> str:
    """The heading that the text after ``before`` sits under, with the lines that complete it
    (a function's signature under its name), or "" when there is none nearby. Lines for which
    ``running`` is true (a running header or footer) are not headings."""
    lines = before.split("\n")[:-1]  # the last line is the start of the sentence's own line
    if running is not None:
        lines = ["" if running(line) else line for line in lines]
    width = width or line_width(before)
    for i in range(len(lines) - 1, max(-1, len(lines) - 40), -1):
        if not _is_heading(lines[i], lines[i - 1] if i > 0 else None, width):
            continue
        parts = [lines[i].strip()]
        for follow in lines[i + 1:]:
            follow = follow.strip()
            if not follow or len(" ".join(parts)) >= max_chars or not _label_like(follow):
                break
            parts.append(follow)
        text = " ".join(parts)
        return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " …"
    return ""


def _cut_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    if end - start <= MAX_SENTENCE_CHARS:
        return [(start, end)]
    spans = []
    while end - start > MAX_SENTENCE_CHARS:
        window = text[start:start + MAX_SENTENCE_CHARS]
        cut = max(window.rfind("; "), window.rfind(", "), window.rfind("\n"))
        if cut < MAX_SENTENCE_CHARS // 3:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = MAX_SENTENCE_CHARS
        spans.append((start, start + cut + 1))
        start = start + cut + 1
    spans.append((start, end))
    return spans


def _drop_contained(sentences: list[Sentence]) -> list[Sentence]:
    """Overlapping chunks cut the same sentence at different points: keep the longest piece."""
    spans: dict[tuple[int, int | None], list[tuple[int, int]]] = {}
    for s in sentences:
        spans.setdefault((s.passage.doc_id, s.passage.page), []).append((s.char_start, s.char_end))
    kept = []
    seen: set[tuple] = set()
    for s in sentences:
        key = (s.passage.doc_id, s.passage.page, s.char_start, s.char_end)
        others = spans[key[:2]]
        inside = any(a <= s.char_start and s.char_end <= b and (b - a) > (s.char_end - s.char_start)
                     for a, b in others)
        if not inside and key not in seen:
            seen.add(key)
            kept.append(s)
    return kept


def terms(text: str) -> list[str]:
    """Key terms: lower-case words, stop words out, light plural folding; and command-line
    options as written ("-W" is not "-w"), which a one-letter word would lose."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        out.append(_fold(w))
    out.extend(_OPTION.findall(text))
    return out


def _fold(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def coverage(question_terms: dict[str, float], text_terms: set[str]) -> float:
    """Weighted share of the question's terms found in a text (prefix match for word forms)."""
    total = sum(question_terms.values())
    if not total:
        return 0.0
    got = 0.0
    for t, w in question_terms.items():
        if t in text_terms or (len(t) >= 5 and t[0] != "-" and any(x.startswith(t[:5]) for x in text_terms)):
            got += w
    return got / total


def _headings(sentences: list[Sentence], passages: list[Passage], before: list[str] | None,
              running: Callable[[Passage, str], bool] | None) -> list[str]:
    """The heading above each sentence, read from its page's text before it."""
    if not before:
        return [""] * len(sentences)
    prefix = {p.chunk_id: before[i] if i < len(before) else "" for i, p in enumerate(passages)}
    widths: dict[str, int] = {}
    out = []
    for s in sentences:
        p = s.passage
        head = prefix.get(p.chunk_id, "")
        if p.chunk_id not in widths:
            widths[p.chunk_id] = line_width(head + p.text)
        skip = None if running is None else (lambda line, p=p: running(p, line))
        out.append(heading_above(head + p.text[:s.char_start - p.char_start], widths[p.chunk_id], running=skip))
    return out


_ANAPHORA = re.compile(r"^(?:he|she|it|they|his|her|its|their|this|these|those|that|there|such|the latter|"
                       r"the former|both|however|also|then|thus|in addition|as a result|instead)\b", re.IGNORECASE)


# the kind of answer a question asks for, and how a line shows it: a sentence that holds
# something of that kind scores a little higher (answer-type matching, as in classic QA)
_ANSWER_KINDS = (
    (re.compile(r"\bhow (?:many|much|long|old|far|often|big|large|fast|high|low)\b|\bwhat (?:year|percentage|"
                r"percent|number|size|port|amount|exit (?:code|status))\b|\bwhich (?:year|port|number)\b|"
                r"\bin what year\b|^when\b|\bwhen (?:did|was|were|is|does|do)\b", re.IGNORECASE),
     re.compile(r"\d")),
    (re.compile(r"\b(?:option|flag|switch)\b", re.IGNORECASE), _OPTION),
    (re.compile(r"\benvironment variables?\b", re.IGNORECASE), re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\b[A-Z]{3,}\b")),
)
ANSWER_KIND_BOOST = 0.1


def answer_kinds(question: str) -> list[re.Pattern]:
    """Patterns for what the question asks for (a number, an option, a variable), if any."""
    return [shows for asks, shows in _ANSWER_KINDS if asks.search(question)]


def follows(prev: Sentence, sentence: Sentence) -> bool:
    """Is ``prev`` the sentence just before ``sentence`` in the same paragraph? A blank line
    between them starts a new paragraph, whose first sentence doesn't lean on the last one."""
    if prev.passage is not sentence.passage:
        return False
    base = sentence.passage.char_start
    gap = sentence.passage.text[prev.char_end - base:sentence.char_start - base]
    return PARAGRAPH_BREAK.search(gap) is None


PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def needs_context(sentence: str) -> bool:
    """Does a sentence lean on the one before it (a pronoun or a connective at its start)?"""
    return bool(_ANAPHORA.match(sentence.lstrip("\"'(“‘")))


def select_evidence(question: str, passages: list[Passage], embedder, max_chars: int = 1100,
                    max_lines: int = 5, context: str = "before",
                    before: list[str] | None = None,
                    running: Callable[[Passage, str], bool] | None = None) -> Evidence:
    """The evidence block for ``question`` from retrieved ``passages`` (best first).

    ``before[i]``, when given, is the text of its page just before ``passages[i]``: a sentence
    then carries the heading it sits under (a section title, the name of the function a
    manual describes), which counts for matching and is shown to the model with the line.
    ``running(passage, line)`` tells a running header or footer of the passage's document:
    never a heading, never evidence.
    """
    import numpy as np

    top_similarity = max((p.similarity or 0.0) for p in passages) if passages else 0.0
    sentences = _drop_contained([s for p in passages for s in split_sentences(p)
                                 if sum(c.isalpha() for c in s.text) >= 4  # not a stray "If" or "To"
                                 and (running is None or not running(p, s.text))])
    q_terms = terms(question)
    if not sentences:
        return Evidence([], top_similarity, 0.0, 0.0, len(set(q_terms)))
    # rarer terms among the candidates weigh more (a local IDF)
    sentence_terms = [set(terms(s.text)) for s in sentences]
    n = len(sentences)
    weights: dict[str, float] = {}
    for t in q_terms:
        df = sum(1 for st in sentence_terms if t in st)
        weights[t] = math.log(1 + n / (1 + df)) + 0.5
    qvec = embedder.embed_query(question)
    vecs = embedder.embed([s.text for s in sentences], batched=True)
    cos = np.asarray(vecs @ qvec, dtype=np.float32)
    rank_of = {p.chunk_id: i for i, p in enumerate(passages)}
    headings = _headings(sentences, passages, before, running)
    kinds = answer_kinds(question)
    scored = []
    for i, s in enumerate(sentences):
        neighbours = sentence_terms[i]
        if i > 0 and follows(sentences[i - 1], s):
            neighbours = neighbours | sentence_terms[i - 1]
        if headings[i]:
            neighbours = neighbours | set(terms(headings[i]))
        cov = coverage(weights, neighbours)
        prior = 0.05 / (1 + rank_of[s.passage.chunk_id])
        kind = ANSWER_KIND_BOOST if kinds and any(k.search(headings[i] + " " + s.text) for k in kinds) else 0.0
        score = 0.55 * float(cos[i]) + 0.45 * cov + prior + kind
        scored.append((score, i, cov))
    scored.sort(key=lambda x: -x[0])
    lines: list[EvidenceLine] = []
    used: set[int] = set()
    chars = 0
    for score, i, cov in scored:
        if len(lines) >= max_lines or i in used:
            continue
        s = sentences[i]
        first = i
        last = i
        item = _is_item(s.text)  # a list item stands alone: its neighbours are other items
        if context != "none" and not item and i > 0 and follows(sentences[i - 1], s) \
                and (i - 1) not in used and (context == "before" or needs_context(s.text)):
            prev = sentences[i - 1]
            if len(prev.text) + len(s.text) < 480:
                first = i - 1
        if context != "none" and not item and len(s.text) < 100 and s.text[-1] not in ".!?" \
                and i + 1 < len(sentences) \
                and follows(s, sentences[i + 1]) and (i + 1) not in used:
            last = i + 1  # a short line (a label, a table row) needs its neighbours on both sides
        span = sentences[first:last + 1]
        text = " ".join(x.text for x in span)
        # the heading of the best sentence: when the line starts with it (a keyword on its own
        # line above its description), the line carries it already
        heading = headings[i] if headings[i] not in text else ""
        if lines and chars + len(heading) + len(text) > max_chars:  # the heading is shown: it counts
            heading = headings[i] if headings[i] not in s.text else ""
            if (first, last) != (i, i) and chars + len(heading) + len(s.text) <= max_chars:
                first, last, span, text = i, i, [s], s.text
            else:
                continue
        used.update(range(first, last + 1))
        chars += len(heading) + len(text)
        base = s.passage.char_start
        exact = s.passage.text[span[0].char_start - base:span[-1].char_end - base]  # the page's own text
        lines.append(EvidenceLine(len(lines) + 1, s.passage, span[0].char_start, span[-1].char_end,
                                  exact, score, float(cos[i]), cov, heading))
    best = scored[0]
    return Evidence(lines, top_similarity, float(cos[best[1]]), best[2], len(set(q_terms)))

