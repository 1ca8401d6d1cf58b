"""A saved chat as Markdown, with every citation resolved to its file, page and quote.

Qt-free, so the command line (``sprig chats export ID``) and the window write the same text.
Everything that came from a document or a file name is made printable (no escape sequences
reach a terminal) and escaped for Markdown (a document's ``*`` or ``<script>`` is shown, not
rendered); the answers keep their own Markdown, as the window shows them.
"""

from __future__ import annotations

import re
import time

from desktop.chats import AnswerRecord, Conversation, Message
from desktop.display import printable
from desktop.rag.types import Source, location_of

MAX_QUOTE_CHARS = 600  # evidence lines are a sentence or two; a longer stored passage is cut
# put after a sentence the evidence does not support (the window draws it as a warning)
UNSUPPORTED_NOTE = "(not supported by the cited evidence)"
UNSUPPORTED_MARK = f" *{UNSUPPORTED_NOTE}*"

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_LINE_START = re.compile(r"^(\s*)([#+\-=])|^(\s*\d+)([.)])")


def md_escape(text: str) -> str:
    """One line of plain text, shown as written by any Markdown renderer."""
    text = _MD_SPECIAL.sub(r"\\\1", printable(text))
    # a line that would start a heading or a list: "\# x", "\- x", "1\. x"
    return _LINE_START.sub(lambda m: (m.group(1) + "\\" + m.group(2)) if m.group(2)
                           else (m.group(3) + "\\" + m.group(4)), text)


def code_span(text: str) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    text = printable(text)
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def quote(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """A source's words on one line, cut at ``limit`` characters."""
    words = " ".join(text.split())
    if len(words) > limit:
        words = words[: limit - 1].rstrip() + "…"
    return words


def answer_text(content: str, record: AnswerRecord) -> str:
    """The answer as the window shows it: unsupported sentences marked, and the number of a
    source the model did not cite by number (it was matched by shared words) added at the end."""
    if record.abstained:
        return content
    for claim in record.claims:
        text = claim.text
        if not claim.supported and text and text in content:
            content = content.replace(text, text + UNSUPPORTED_MARK, 1)
    missing = [c.n for c in record.citations if c.n and f"[{c.n}]" not in content]
    if missing and content.strip():
        content = content.rstrip() + " " + "".join(f"[{n}]" for n in missing)
    return content


def source_markdown(source: Source) -> str:
    """``**[n]** name, page N — `full path` `` then the quote as a block quote."""
    n = source.n
    head = (f"**[{n}]** " if n else "") + md_escape(location_of(source.path, source.page, "unknown file"))
    if source.path:
        head += " — " + code_span(source.path)
    if source.heading:
        head += " — under " + md_escape(quote(source.heading))
    if source.matched:
        head += " *(matched by shared words: the model gave no citation)*"
    text = quote(source.text)
    body = f"> {md_escape(text)}" if text else "> *(the quote was not recorded)*"
    return f"{head}\n\n{body}"


def answer_notes(record: AnswerRecord, with_error: bool = True) -> list[str]:
    """The notes under an answer (stopped, interrupted, not from the documents, quoted...),
    the same words in the window and in an exported chat."""
    notes = []
    if with_error and record.error:
        notes.append(record.error)
    if record.stopped:
        notes.append("Stopped.")
    elif record.partial:
        notes.append("Interrupted: Sprig closed before this answer was finished.")
    if record.mode == "general":
        notes.append("Not from your documents.")
    elif record.mode == "quoted":
        notes.append("Quoted from your documents: the model gave no answer that the evidence supports.")
    if with_error and record.unreadable:
        notes.append("The sources of this answer could not be read.")
    return notes


def _question(message: Message) -> str:
    lines = [md_escape(line) for line in message.content.split("\n")]
    return "---\n\n### Question\n\n" + "  \n".join(lines)


def _answer(message: Message) -> str:
    record = message.record
    text = "\n".join(printable(line) for line in answer_text(message.content, record).split("\n")).strip()
    parts = ["### Answer", text or "*(no answer)*"]
    parts += [f"*{md_escape(note)}*" for note in answer_notes(record)]
    if record.citations:
        parts.append("**Sources**")
        parts += [source_markdown(s) for s in record.citations]
    elif record.nearest:
        parts.append("**Nearest passages** (not enough to answer)")
        parts += [source_markdown(s) for s in record.nearest]
    return "\n\n".join(parts)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def chat_markdown(conversation: Conversation, exported_at: float | None = None) -> str:
    """The whole chat as a Markdown document (title, then each question and answer)."""
    conv = conversation
    questions = sum(1 for m in conv.messages if m.role == "user")
    header = [
        f"# {md_escape(conv.title)}",
        f"Collection {code_span(conv.collection)} · {questions} question{'s' if questions != 1 else ''} · "
        f"started {_when(conv.created)} · exported from Sprig {_when(exported_at or time.time())}",
    ]
    body = [_question(m) if m.role == "user" else _answer(m) for m in conv.messages]
    return "\n\n".join(header + body) + "\n"
