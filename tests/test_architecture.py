"""House rules that keep Sprig fast to start and easy to test, checked on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_core_never_imports_qt():
    """import-linter contract in pyproject.toml: desktop.rag and desktop.models stay Qt-free."""
    result = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_lint_is_clean():
    """ruff, including the ban on module-level torch/chromadb/llama_cpp/sentence_transformers imports."""
    result = subprocess.run([str(BIN / "ruff"), "check", "desktop", "tests", "bench", "tools"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_core_stays_light():
    code = (
        "import sys, desktop.rag.library, desktop.rag.answer, desktop.cli, desktop.models.llm;"
        "heavy = [m for m in ('torch', 'chromadb', 'llama_cpp', 'sentence_transformers', 'PySide6') if m in sys.modules];"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
