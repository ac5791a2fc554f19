"""The import arrows of DESIGN.md (import-linter contracts in pyproject.toml), ruff (lint and format) and mypy, as tests,
so that the README's one test command checks them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = run("lint-imports")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_ruff_is_clean():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_format_is_clean():
    """One layout, written by the formatter: `ruff format .` fixes what this finds."""
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_is_clean():
    """storage, ftapp and cli type-check ([tool.mypy] in pyproject.toml names them and the libraries it skips)."""
    result = run("mypy")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_storage_and_ftapp_import_no_ml_stack():
    code = (
        "import sys, ftapp.services, cli.main, storage; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets', 'mlflow') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
