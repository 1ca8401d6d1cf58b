"""Language model runtimes behind one small interface.

``ChatModel.stream(messages, ...)`` yields text pieces and stops between any two tokens when
``should_stop()`` turns true. ``count(messages)`` is the prompt's size in the model's own
tokens, so the caller can keep every prompt inside the context window.

* ``LocalModel``: a GGUF file run in-process by llama-cpp-python (imported lazily).
  Prompts are built as token lists: template text may contain special tokens, message
  content never does, so a document that contains "<|im_start|>system" stays plain text.
  A model without a chat template gets a plain completion prompt with stop sequences.
* ``EndpointModel`` (``desktop.models.endpoint``): any OpenAI-compatible server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from desktop.cpu import busy_cores, logical_cores, physical_cores
from desktop.errors import ModelError
from desktop.models.chat_template import (
    TemplateRejected,
    compile_chat_template,
    prepare_chat_template,
    render_chat_template,
)
from desktop.models.gguf import check_gguf

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

PLAIN_STOPS = ["\n\n", "\nQuestion:", "Question:", "\nPassages", "<passages", "<end_of_turn>", "<|endoftext|>"]


def llm_threads() -> tuple[int, int]:
    """(generation threads, prompt threads): physical cores for decode, all for prefill (of
    the cores this process may run on)."""
    return physical_cores(), logical_cores()


def threads_for_load(threads: int, busy: float) -> int:
    """Threads to run with when ``busy`` cores are taken by other work (indexing, other apps).

    llama.cpp's threads wait for each other at every step; one that shares its core with
    another process stalls them all. On 2 busy cores a 2-thread answer was ~10x slower than
    a 1-thread one (bench/perf.py "TTFT under load"), so Sprig leaves the busy cores alone.
    """
    free = logical_cores() - busy
    return max(1, min(threads, round(free)))


class ChatModel:
    """The interface (see module docstring)."""

    name: str = "model"
    n_ctx: int = 4096
    has_chat_template: bool = True
    template_problem: str = ""  # why the model's own chat template was rejected, if it was

    def load(self) -> None: ...

    def count(self, messages: list[Message]) -> int:
        raise NotImplementedError

    def count_text(self, text: str) -> int:
        raise NotImplementedError

    def truncate_text(self, text: str, max_tokens: int) -> str:
        raise NotImplementedError

    def stream(self, messages: list[Message], max_tokens: int = 256, temperature: float = 0.2,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
        raise NotImplementedError

    def close(self) -> None: ...


_SENTINEL = "\ue000{}\ue001"


class LocalModel(ChatModel):
    def __init__(self, path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                 n_threads_batch: int | None = None, seed: int = 1234):
        self.path = Path(path)
        self.n_ctx = n_ctx
        threads, batch_threads = llm_threads()
        self.n_threads = n_threads or threads
        self.n_threads_batch = n_threads_batch or batch_threads
        self.seed = seed
        self._llm = None
        self._template = None
        self._lock = threading.Lock()  # one generation at a time on one model
        self.name = self.path.stem

    # ---------------------------------------------------------------- loading
    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        if self._llm is not None:
            return
        check_gguf(self.path)
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ModelError(f"llama-cpp-python is not installed ({exc}).") from exc
        try:
            with plain_cpu_buffers():
                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads_batch,
                    n_batch=512,
                    seed=self.seed,
                    verbose=False,
                )
        except Exception as exc:  # noqa: BLE001 - llama.cpp reports failures as ValueError/RuntimeError
            raise ModelError(f"Cannot load {self.path.name}: {exc}") from exc
        meta = self._llm.metadata or {}
        self.name = meta.get("general.name") or self.path.stem
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        vocab = self._llm
        self._bos_id = vocab.token_bos()
        self._eos_id = vocab.token_eos()
        self._bos_text = vocab.detokenize([self._bos_id], special=True).decode("utf-8", "replace") if self._bos_id >= 0 else ""
        self._eos_text = vocab.detokenize([self._eos_id], special=True).decode("utf-8", "replace") if self._eos_id >= 0 else ""
        # the template is foreign code: checked (sandbox, deadline) before use; a rejected
        # one falls back to the plain completion prompt and says why in template_problem
        self._template, self.template_problem = prepare_chat_template(
            meta.get("tokenizer.chat_template"), bos_token=self._bos_text, eos_token=self._eos_text
        )
        self.has_chat_template = self._template is not None

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                try:
                    self._llm.close()
                except Exception:  # noqa: BLE001
                    pass
                self._llm = None

    # ---------------------------------------------------------------- tokens
    def _tok(self, text: str, special: bool) -> list[int]:
        if not text:
            return []
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def count_text(self, text: str) -> int:
        self.load()
        return len(self._tok(text, False))

    def truncate_text(self, text: str, max_tokens: int) -> str:
        self.load()
        tokens = self._tok(text, False)
        if len(tokens) <= max_tokens:
            return text
        return self._llm.detokenize(tokens[: max(0, max_tokens)]).decode("utf-8", "ignore")

    def render(self, messages: list[Message]) -> list[int]:
        """The prompt as tokens: template text may hold special tokens, message content never."""
        self.load()
        contents = [m["content"] for m in messages]
        if self._template is not None:
            masked = [{"role": m["role"], "content": _SENTINEL.format(i)} for i, m in enumerate(messages)]
            try:
                text = render_chat_template(self._template, masked, bos_token=self._bos_text,
                                            eos_token=self._eos_text)
            except TemplateRejected as exc:  # failed, escaped the sandbox or ran past its deadline
                raise ModelError(f"The model's chat template cannot be used: {exc}") from exc
        else:
            text = _plain_prompt([{"role": m["role"], "content": _SENTINEL.format(i)} for i, m in enumerate(messages)])
        tokens: list[int] = []
        pos = 0
        import re

        for match in re.finditer("\ue000(\\d+)\ue001", text):
            tokens += self._tok(text[pos : match.start()], True)
            tokens += self._tok(contents[int(match.group(1))], False)
            pos = match.end()
        tokens += self._tok(text[pos:], True)
        if self._add_bos and self._bos_id >= 0 and (not tokens or tokens[0] != self._bos_id):
            tokens.insert(0, self._bos_id)
        return tokens

    def count(self, messages: list[Message]) -> int:
        return len(self.render(messages))

    # ---------------------------------------------------------------- generation
    def stream(self, messages: list[Message], max_tokens: int = 256, temperature: float = 0.2,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
        tokens = self.render(messages)
        if len(tokens) + max_tokens > self.n_ctx:
            raise ModelError(
                f"The prompt ({len(tokens)} tokens) and answer ({max_tokens}) exceed the context "
                f"window ({self.n_ctx})."
            )
        if self.has_chat_template:
            yield from self.stream_tokens(tokens, max_tokens, temperature, should_stop, stop=[])
            return
        yield from _until_blank_line(self.stream_tokens(
            tokens, max_tokens, temperature, should_stop, stop=[s for s in PLAIN_STOPS if s != "\n\n"]))

    adapt_threads = True  # fewer threads while other work keeps cores busy (see threads_for_load)
    threads_used: tuple[int, int] | None = None  # (generation, prompt) threads of the last answer

    def _fit_threads(self) -> None:
        gen, batch = self.n_threads, self.n_threads_batch
        if self.adapt_threads:
            busy = busy_cores()
            gen, batch = threads_for_load(gen, busy), threads_for_load(batch, busy)
        if (gen, batch) != self.threads_used:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llm._ctx.ctx, gen, batch)
            self.threads_used = (gen, batch)

    def stream_tokens(self, tokens: list[int], max_tokens: int, temperature: float,
                      should_stop: Callable[[], bool], stop: list[str] | None = None) -> Iterator[str]:
        with self._lock:
            if should_stop():
                return
            self._fit_threads()
            pieces = self._llm.create_completion(
                tokens, max_tokens=max_tokens, temperature=temperature, top_p=0.9, top_k=40,
                repeat_penalty=1.1, stop=stop or [], stream=True,
            )
            try:
                for chunk in pieces:
                    text = chunk["choices"][0]["text"]
                    if text:
                        yield text
                    if should_stop():
                        break
            finally:
                pieces.close()


_PARAMS_LOCK = threading.Lock()


class plain_cpu_buffers:
    """Load weights into plain CPU buffers, not llama.cpp's "extra" repacked ones.

    On CPUs with AMX (Intel Sapphire Rapids and later), llama.cpp repacks weights for its AMX
    kernels, and those crash with SIGSEGV inside virtual machines that expose the AMX flags.
    The plain AVX2/AVX-512 kernels are safe everywhere. SPRIG_LLAMA_EXTRA_BUFFERS=1 opts back in.
    """

    def __enter__(self):
        _PARAMS_LOCK.acquire()
        import llama_cpp.llama_cpp as lib

        self.lib = lib
        self.original = lib.llama_model_default_params
        if os.environ.get("SPRIG_LLAMA_EXTRA_BUFFERS") != "1":
            original = self.original

            def params():
                value = original()
                if hasattr(value, "use_extra_bufts"):
                    value.use_extra_bufts = False
                return value

            lib.llama_model_default_params = params
        return self

    def __exit__(self, *exc):
        self.lib.llama_model_default_params = self.original
        _PARAMS_LOCK.release()


def _until_blank_line(pieces: Iterator[str]) -> Iterator[str]:
    """A base model's answer is its first line; newlines before it begins do not count (Gemma
    often starts with some): a "\n\n" stop sequence would end it before a word."""
    text = ""
    try:
        for piece in pieces:
            if not text.strip():
                piece = piece.lstrip("\n")
            text += piece
            body = text.lstrip()
            cut = body.find("\n")  # one line: after it a base model echoes evidence or rambles
            if cut >= 0:
                keep = len(piece) - (len(body) - cut)
                if keep > 0:
                    yield piece[:keep]
                return
            if piece:
                yield piece
    finally:
        pieces.close()


def _plain_prompt(messages: list[Message]) -> str:
    """A completion prompt for base models: instructions, earlier turns, then the question."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            parts.append(m["content"] + "\nAnswer:")
        else:
            parts.append(" " + m["content"] + "\n\n")
    return "".join(parts)


def _compile_template(source: str):
    """Compile a GGUF chat template in the hardened sandbox; None if it is rejected."""
    try:
        return compile_chat_template(source)
    except TemplateRejected:
        return None
