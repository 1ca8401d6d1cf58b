"""Model files and chat templates as hostile input (RELIABILITY.md B8, F4).

Missing, truncated, random and forged GGUF files give a clear error from a probe in a child
process; hostile chat templates (sandbox escapes, CPU and memory burn, broken syntax) are
rejected within seconds and the model falls back to the plain prompt; a crash while loading
does not turn into a crash loop.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

from desktop.config import Paths, Settings
from desktop.errors import ModelError
from desktop.models.chat_template import (
    TemplateRejected,
    compile_chat_template,
    prepare_chat_template,
    render_chat_template,
)
from desktop.models.llm import LocalModel
from desktop.models.probe import (
    auto_load_allowed,
    clear_crash_marker,
    last_crash,
    model_load_guard,
    open_local_model,
    probe_model,
)
from tests.helpers.gguf_tools import forged_header, truncated_copy, with_metadata

REPO = Path(__file__).resolve().parents[2]

SSTI_MRO = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
SSTI_POPEN = (
    "{% for c in ().__class__.__base__.__subclasses__() %}{% if c.__name__=='catch_warnings' %}"
    "{{ c()._module.__builtins__['__import__']('os').popen('touch SENTINEL').read() }}{% endif %}{% endfor %}"
)
ECHO = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
BURN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" + ECHO
# passes the start-up check (at most 14 messages) and burns only on a longer chat
# burns only past every conversation length the start-up check renders (and Sprig sends)
LATE_BURN = ("{% if messages|length > 40 %}{% for i in range(100000) %}{% for j in range(100000) %}"
             "{% endfor %}{% endfor %}{% endif %}" + ECHO)

HOSTILE_TEMPLATES = {
    "ssti-mro": (SSTI_MRO, "tries to reach Python internals"),
    "ssti-popen": (SSTI_POPEN, "tries to reach Python internals"),
    "ssti-getitem": ("{{ messages['__class__'] }}" + ECHO, "tries to reach Python internals"),
    "ssti-attr-filter": ("{{ messages|attr('__class__') }}" + ECHO, "tries to reach Python internals"),
    "cpu-burn": (BURN, "takes too long to render"),
    "huge-string": ("{{ 'x' * 1000000000 }}" + ECHO, "huge value"),
    "huge-number": ("{{ 9 ** 999999999 }}" + ECHO, "huge number"),
    "huge-padding": ("{{ '%0999999999d' % 1 }}" + ECHO, "huge width"),
    "unknown-tag": ("{% frobnicate %}" + ECHO, "cannot be parsed"),
    "raises": ("{{ raise_exception('roles must alternate') }}", "roles must alternate"),
    "drops-text": ("{% for m in messages if m.role == 'user' %}{{ m.content }}{% endfor %}", "drops message text"),
}


# ------------------------------------------------------------------ files
def _assert_clear(error: str) -> None:
    assert error and "Traceback" not in error and len(error) < 400, error


def test_missing_model_file(tmp_path, sprig_home):
    path = tmp_path / "gone.gguf"
    result = probe_model(path)
    assert not result.ok and "Model file not found" in result.error
    _assert_clear(result.error)
    with pytest.raises(ModelError, match="Model file not found"):
        LocalModel(path).load()
    with pytest.raises(ModelError, match="Model file not found"):
        open_local_model(path, Paths(sprig_home))
    assert last_crash(Paths(sprig_home)) is None


@pytest.mark.parametrize("fraction", [0.10, 0.50, 0.99])
def test_truncated_model_file(tmp_path, gemma_path, fraction):
    path = truncated_copy(gemma_path, tmp_path / "partial.gguf", fraction)
    started = time.monotonic()
    result = probe_model(path)
    assert time.monotonic() - started < 60
    assert not result.ok, result
    assert result.error.startswith("partial.gguf is damaged or incomplete")
    assert "not within the file bounds" in result.error
    _assert_clear(result.error)


def test_random_bytes_renamed_gguf(tmp_path):
    path = tmp_path / "random.gguf"
    path.write_bytes(os.urandom(2 << 20))
    result = probe_model(path)
    assert not result.ok and "is not a GGUF model file" in result.error


def test_forged_tensor_count(tmp_path):
    """The shape of CVE-2024-21836: a header that claims 2**32 tensors."""
    path = forged_header(tmp_path / "forged.gguf", n_tensors=2**32, n_kv=1)
    result = probe_model(path)
    assert not result.ok and "damaged or forged" in result.error
    assert "4,294,967,296 tensors" in result.error


def test_forged_metadata_lengths(tmp_path):
    """Counts that pass the header check, then a key whose length is 2**62: llama.cpp must not
    take the app down (whatever it does, it does it in the probe process)."""
    body = struct.pack("<Q", 2**62) + b"general.architecture"
    path = forged_header(tmp_path / "forged-kv.gguf", n_tensors=1, n_kv=1, body=body)
    result = probe_model(path)
    assert not result.ok
    _assert_clear(result.error)
    assert result.error.startswith("forged-kv.gguf is damaged")


def test_real_models_pass_the_probe(qwen_path, gemma_path):
    qwen = probe_model(qwen_path)
    assert qwen.ok and qwen.template == "ok" and qwen.template_problem == "", qwen
    gemma = probe_model(gemma_path)
    assert gemma.ok and gemma.template == "none", gemma


# ------------------------------------------------------------------ templates
@pytest.mark.parametrize("name", list(HOSTILE_TEMPLATES))
def test_hostile_template_is_rejected_quickly(tmp_path, monkeypatch, name):
    source, reason = HOSTILE_TEMPLATES[name]
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    template, problem = prepare_chat_template(source, eos_token="</s>", bos_token="<s>")
    assert time.monotonic() - started < 5
    assert template is None and reason in problem, problem
    assert not (tmp_path / "SENTINEL").exists()


def test_names_built_at_run_time_are_stopped_by_the_sandbox(tmp_path, monkeypatch):
    """A name the static check cannot see ('__cla' ~ 'ss__') is stopped when the template runs."""
    monkeypatch.chdir(tmp_path)
    for probe in ("{{ messages|attr(a) }}", "{{ ()[a] }}", "{{ (()[a])() }}"):
        source = "{% set a = '__cla' ~ 'ss__' %}" + probe + ECHO
        template, problem = prepare_chat_template(source)
        if template is None:
            assert "sandbox" in problem or "failed" in problem, problem
        else:  # the attr filter hands back an undefined value: nothing leaks
            text = render_chat_template(template, [{"role": "user", "content": "hi"}])
            assert "class" not in text
    assert not (tmp_path / "SENTINEL").exists()


def test_benign_templates_are_kept(qwen_path):
    from llama_cpp import Llama

    template, problem = prepare_chat_template(ECHO)
    assert template is not None and problem == ""
    llm = Llama(model_path=str(qwen_path), vocab_only=True, verbose=False)
    qwen_source = llm.metadata["tokenizer.chat_template"]
    template, problem = prepare_chat_template(qwen_source, eos_token="<|im_end|>")
    assert template is not None and problem == ""
    text = render_chat_template(template, [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"


def test_render_deadline_cuts_off_a_late_burn():
    template = compile_chat_template(LATE_BURN)
    short = [{"role": "user", "content": "hi"}]
    assert "hi" in render_chat_template(template, short)
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i)} for i in range(43)]
    started = time.monotonic()
    with pytest.raises(TemplateRejected, match="takes too long"):
        render_chat_template(template, long, time_limit_s=1.0)
    assert time.monotonic() - started < 3


def test_sandbox_blocks_the_classic_payload_in_llama_cpp_too(tmp_path, monkeypatch):
    """The library's own formatter (>= 0.2.72) is sandboxed as well (RELIABILITY.md §10.3)."""
    from jinja2.exceptions import SecurityError
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    monkeypatch.chdir(tmp_path)
    formatter = Jinja2ChatFormatter(template=SSTI_POPEN, eos_token="</s>", bos_token="<s>")
    with pytest.raises(SecurityError):
        formatter(messages=[{"role": "user", "content": "hi"}])
    assert not (tmp_path / "SENTINEL").exists()


def test_dependency_floors():
    assert Version(version("llama-cpp-python")) >= Version("0.2.72")  # CVE-2024-34359
    assert Version(version("jinja2")) >= Version("3.1")
    assert Version(version("pypdf")) >= Version("6.16.1")
    assert Version(version("torch").split("+")[0]) >= Version("2.6")  # CVE-2025-32434


# ------------------------------------------------------------------ hostile templates inside model files
@pytest.fixture(scope="module")
def hostile_ggufs(tmp_path_factory, gemma_path):
    folder = tmp_path_factory.mktemp("hostile-gguf")
    return {
        name: with_metadata(gemma_path, folder / f"{name}.gguf", {"tokenizer.chat_template": source})
        for name, source in (("ssti", SSTI_POPEN), ("burn", BURN), ("late-burn", LATE_BURN))
    }


@pytest.mark.parametrize("name,reason", [("ssti", "Python internals"), ("burn", "takes too long")])
def test_probe_rejects_template_inside_gguf(hostile_ggufs, tmp_path, monkeypatch, name, reason):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    result = probe_model(hostile_ggufs[name])
    assert time.monotonic() - started < 30
    assert result.ok and result.template == "rejected" and reason in result.template_problem, result
    assert not (tmp_path / "SENTINEL").exists()


def test_probe_cuts_off_a_template_check_that_runs_too_long(hostile_ggufs):
    started = time.monotonic()
    result = probe_model(hostile_ggufs["burn"], timeout_s=8, template_time_limit_s=600)
    assert time.monotonic() - started < 20
    assert result.ok and result.template == "rejected" and "takes too long" in result.template_problem


def test_model_with_hostile_template_falls_back_to_plain_prompt(hostile_ggufs, tmp_path, monkeypatch, sprig_home):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    model = open_local_model(hostile_ggufs["burn"], Paths(sprig_home), n_ctx=512)
    try:
        assert time.monotonic() - started < 30
        assert not model.has_chat_template and "takes too long" in model.template_problem
        messages = [{"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": "Passages:\n[1] The sky is blue.\n\nQuestion: What colour is the sky?"}]
        text = "".join(model.stream(messages, max_tokens=8, temperature=0.0))
        assert isinstance(text, str)
    finally:
        model.close()
    assert last_crash(Paths(sprig_home)) is None


def test_loaded_model_cuts_off_a_late_burning_template(hostile_ggufs):
    model = LocalModel(hostile_ggufs["late-burn"], n_ctx=512)
    model.load()
    try:
        assert model.has_chat_template  # it passed the start-up check
        long = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i)} for i in range(43)]
        started = time.monotonic()
        with pytest.raises(ModelError, match="takes too long"):
            model.render(long)
        assert time.monotonic() - started < 5
        assert model.count([{"role": "user", "content": "still usable"}]) > 0
    finally:
        model.close()


# ------------------------------------------------------------------ crash-loop guard
CRASH_WHILE_LOADING = """
import os, sys
from pathlib import Path
from desktop.config import Paths
from desktop.models.probe import model_load_guard
with model_load_guard(Paths(Path(sys.argv[1])), sys.argv[2]):
    os.abort()  # llama.cpp aborting inside the loader
"""


def test_crash_while_loading_stops_auto_load_until_asked(sprig_home, gemma_path):
    paths = Paths(sprig_home)
    assert auto_load_allowed(paths, Settings()) == (True, "")
    run = subprocess.run([sys.executable, "-c", CRASH_WHILE_LOADING, str(sprig_home), str(gemma_path)],
                         cwd=REPO, capture_output=True, timeout=60)
    assert run.returncode < 0  # it really died
    crash = last_crash(paths)
    assert crash is not None and crash["model"] == str(gemma_path)
    allowed, why = auto_load_allowed(paths, Settings())
    assert not allowed and gemma_path.name in why and "closed unexpectedly" in why
    # the next start again: still no auto-load (no loop)
    assert not auto_load_allowed(paths, Settings())[0]
    # the user asks for the model: it loads, and auto-load is allowed again
    model = open_local_model(gemma_path, paths, n_ctx=512)
    model.close()
    assert last_crash(paths) is None and auto_load_allowed(paths, Settings()) == (True, "")


def test_clean_errors_do_not_count_as_crashes(sprig_home, tmp_path):
    paths = Paths(sprig_home)
    with pytest.raises(ModelError):
        with model_load_guard(paths, tmp_path / "x.gguf"):
            raise ModelError("damaged")
    assert last_crash(paths) is None
    assert auto_load_allowed(paths, Settings(auto_load_model=False))[0] is False
    paths.crash_marker.write_text("{torn")
    assert not auto_load_allowed(paths, Settings())[0]  # an unreadable marker still counts
    clear_crash_marker(paths)
    assert auto_load_allowed(paths, Settings())[0]


WIDTH_BOMBS = {
    "printf_format_filter": "{{ '%0999999999d'|format(1) }}",
    "center_filter": "{{ 'x'|center(1999999999) }}",
    "indent_filter": "{{ 'a\nb'|indent(999999999) }}",
    "ljust_method": "{{ 'x'.ljust(1999999999) }}",
    "zfill_method": "{{ 'x'.zfill(999999999) }}",
    "str_format_width": "{{ '{:>999999999}'.format(1) }}",
    "str_format_nested_width": "{{ '{:>{w}}'.format(1, w=999999999) }}",
}


@pytest.mark.parametrize("name", sorted(WIDTH_BOMBS))
def test_width_bombs_are_refused_before_they_allocate(name):
    """Each of these ran for seconds and took gigabytes before the caps (C-level calls the
    deadline tracer cannot interrupt)."""
    import time

    source = WIDTH_BOMBS[name] + ECHO
    started = time.monotonic()
    template, problem = prepare_chat_template(source)
    assert template is None and "huge width" in problem
    assert time.monotonic() - started < 1.0


def test_a_template_that_fails_at_one_conversation_length_is_refused():
    """Every length Sprig can send is rendered in the check, not only a few."""
    source = "{% if messages|length == 18 %}{{ raise_exception('eighteen') }}{% endif %}" + ECHO
    template, problem = prepare_chat_template(source)
    assert template is None and "eighteen" in problem
