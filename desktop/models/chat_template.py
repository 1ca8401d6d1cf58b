"""GGUF chat templates are Jinja programs written by whoever made the model file: treat them
as hostile code (CVE-2024-34359).

* They run in Jinja's immutable sandbox, which blocks attribute escapes such as
  ``''.__class__.__mro__``; templates that even name such attributes are refused before
  they run.
* The sandbox does not stop CPU or memory burn (two nested ``range(100000)`` loops take
  minutes; ``'x' * 10**10`` takes gigabytes), so every render runs under a deadline and
  repetition, powers and ``%``-formatting are capped.
* ``prepare_chat_template`` renders the conversation shapes the app sends before the
  template is used; a template that fails, escapes, hangs or drops message text is
  rejected, and the model falls back to the plain completion prompt.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

MAX_TEMPLATE_CHARS = 256 * 1024
MAX_OUTPUT_CHARS = 1_000_000
RENDER_TIME_LIMIT_S = 2.0
CHECK_TIME_LIMIT_S = 3.0

_FORMAT_WIDTH = re.compile(r"%[-#0 +]*(\d+)(?:\.(\d+))?")


class TemplateRejected(Exception):
    """The chat template is unsafe or unusable; the message says why, for the user."""


class TemplateTimeout(TemplateRejected):
    """A render ran past its deadline."""


def _environment():
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
        """The immutable sandbox, with repetition, powers and %-formatting capped."""

        intercepted_binops = frozenset({"*", "**", "%"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                        if len(seq) * max(0, n) > MAX_OUTPUT_CHARS:
                            raise SecurityError("the template builds a huge value")
            elif operator == "**":
                if isinstance(right, (int, float)) and isinstance(left, (int, float)) and abs(right) > 64 \
                        and abs(left) > 1:
                    raise SecurityError("the template computes a huge number")
            elif operator == "%" and isinstance(left, str):
                for width, precision in _FORMAT_WIDTH.findall(left):
                    if int(width or 0) > 10_000 or int(precision or 0) > 10_000:
                        raise SecurityError("the template pads text to a huge width")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's signature
            """Cap the width arguments of str methods that pad or repeat text."""
            name = getattr(__obj, "__name__", "")
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str) and name in _PADDING_METHODS:
                _check_widths(args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)

        def wrap_str_format(self, value):
            """str.format and format_map in the sandbox: literal and nested widths capped."""
            wrapped = super().wrap_str_format(value)
            if wrapped is None:
                return None
            text = value.__self__

            def capped(*args, **kwargs):
                _check_format_spec(text)
                if re.search(r"\{[^{}]*:[^{}]*\{", text):  # a width given as an argument: {:>{w}}
                    _check_widths(args, kwargs)
                    for mapping in args:
                        if isinstance(mapping, dict):
                            _check_widths((), mapping)
                return wrapped(*args, **kwargs)

            return capped

    from jinja2.exceptions import TemplateError

    def raise_exception(message):
        raise TemplateError(message)

    env = ChatTemplateEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=["jinja2.ext.loopcontrols"])
    for name in ("center", "indent", "wordwrap", "format", "truncate"):
        if name in env.filters:
            env.filters[name] = _capped_filter(env.filters[name], name)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(str(fmt)[:64])
    return env


_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_MAX_WIDTH = 10_000
_SPEC_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d+)")


def _check_widths(args, kwargs) -> None:
    from jinja2.exceptions import SecurityError

    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_WIDTH:
            raise SecurityError("the template pads text to a huge width")


def _check_format_spec(text: str) -> None:
    from jinja2.exceptions import SecurityError

    for width in _SPEC_WIDTH.findall(text):
        if int(width) > _MAX_WIDTH:
            raise SecurityError("the template pads text to a huge width")
    for width, precision in _FORMAT_WIDTH.findall(text):
        if int(width or 0) > _MAX_WIDTH or int(precision or 0) > _MAX_WIDTH:
            raise SecurityError("the template pads text to a huge width")


def _capped_filter(inner, name: str):
    """A Jinja filter whose width arguments (and %-format widths) are capped."""
    import functools

    @functools.wraps(inner)
    def capped(*args, **kwargs):
        _check_widths(args[1:], kwargs)
        if name == "format" and args and isinstance(args[0], str):
            _check_format_spec(args[0])
        return inner(*args, **kwargs)

    return capped


def _reaches_internals(tree) -> str | None:
    """The first underscore attribute a template names (``__class__``, ``_module``...), if any."""
    from jinja2 import nodes

    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            return node.attr
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            return node.arg.value
        if isinstance(node, nodes.Filter) and node.name == "attr" and node.args \
                and isinstance(node.args[0], nodes.Const) and str(node.args[0].value).startswith("_"):
            return str(node.args[0].value)
    return None


def compile_chat_template(source: str):
    """A compiled template, or TemplateRejected with the reason."""
    from jinja2.exceptions import TemplateSyntaxError

    if not isinstance(source, str) or not source.strip():
        raise TemplateRejected("the chat template is empty")
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateRejected(f"the chat template is too long ({len(source):,} characters)")
    env = _environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateRejected(f"the chat template cannot be parsed ({exc.message})") from None
    attr = _reaches_internals(tree)
    if attr is not None:
        raise TemplateRejected(f"the chat template tries to reach Python internals ({attr})")
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:  # pragma: no cover - parse() already succeeded
        raise TemplateRejected(f"the chat template cannot be parsed ({exc.message})") from None


def render_chat_template(template, messages: list[dict], *, bos_token: str = "", eos_token: str = "",
                         add_generation_prompt: bool = True,
                         time_limit_s: float = RENDER_TIME_LIMIT_S) -> str:
    """Render under a deadline (checked between template statements, on any thread)."""
    from jinja2.exceptions import SecurityError, TemplateError

    deadline = time.monotonic() + time_limit_s

    def tracer(frame, event, arg):
        if time.monotonic() > deadline:
            raise TemplateTimeout(f"the chat template takes too long to render (over {time_limit_s:g} s)")
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        text = template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=bos_token, eos_token=eos_token)
    except TemplateRejected:
        raise
    except SecurityError as exc:
        raise TemplateRejected(f"the chat template was stopped by the sandbox ({exc})") from None
    except TemplateError as exc:
        raise TemplateRejected(f"the chat template failed ({exc})") from None
    except (RecursionError, MemoryError, OverflowError) as exc:
        raise TemplateRejected(f"the chat template failed ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - any other failure of foreign code
        raise TemplateRejected(f"the chat template failed ({type(exc).__name__}: {str(exc)[:120]})") from None
    finally:
        sys.settrace(previous)
    if len(text) > MAX_OUTPUT_CHARS:
        raise TemplateRejected("the chat template produces a huge prompt")
    return text


# the conversation shapes Sprig sends: system + question after 0 to 12 earlier turns (more
# than the history it keeps), so a template that misbehaves at some length is caught
MAX_CHECKED_TURNS = 12
_SHAPES = tuple(("system",) + ("user", "assistant") * n + ("user",) for n in range(MAX_CHECKED_TURNS + 1))


@dataclass(frozen=True)
class TemplateVerdict:
    ok: bool
    problem: str = ""  # why it was rejected (for the user and the log)


def check_chat_template(template, *, bos_token: str = "", eos_token: str = "",
                        time_limit_s: float = CHECK_TIME_LIMIT_S) -> TemplateVerdict:
    """Render every conversation shape once; all of them together get ``time_limit_s``."""
    deadline = time.monotonic() + time_limit_s
    for shape in _SHAPES:
        messages = [{"role": role, "content": f"\ue000{i}\ue001"} for i, role in enumerate(shape)]
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TemplateTimeout(f"the chat template takes too long to render (over {time_limit_s:g} s)")
            text = render_chat_template(template, messages, bos_token=bos_token, eos_token=eos_token,
                                        time_limit_s=left)
        except TemplateTimeout:
            return TemplateVerdict(False, f"the chat template takes too long to render (over {time_limit_s:g} s)")
        except TemplateRejected as exc:
            return TemplateVerdict(False, str(exc))
        missing = [i for i in range(len(shape)) if f"\ue000{i}\ue001" not in text]
        if missing:
            return TemplateVerdict(False, "the chat template drops message text")
    return TemplateVerdict(True)


def prepare_chat_template(source: str | None, *, bos_token: str = "", eos_token: str = "",
                          time_limit_s: float = CHECK_TIME_LIMIT_S):
    """(compiled template or None, problem or "") for a model's ``tokenizer.chat_template``.

    None with a problem means: do not use it, fall back to the plain completion prompt.
    None without a problem means the model has no template.
    """
    if source is None:
        return None, ""
    try:
        template = compile_chat_template(source)
    except TemplateRejected as exc:
        return None, str(exc)
    verdict = check_chat_template(template, bos_token=bos_token, eos_token=eos_token,
                                  time_limit_s=time_limit_s)
    if not verdict.ok:
        return None, verdict.problem
    return template, ""
