"""The project's own standards: ruff lint, ruff format and mypy on the package are clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "heartbeat_tray", "tests", "testkit", "benchmarks", "scripts"],
        [
            "ruff",
            "format",
            "--check",
            "heartbeat_tray",
            "tests",
            "testkit",
            "benchmarks",
            "scripts",
        ],
        ["mypy", "heartbeat_tray"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_code_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
