"""The layout is the architecture: the core never reaches for a toolkit, the edge never leaks in.

Walks every module's imports (the ones inside functions too) and fails naming the offender.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "heartbeat_tray"

GUI = ("pystray", "tkinter", "PIL", "keyring", "Xlib", "gi", "PyObjCTools")
RULES = {
    # folder: forbidden import prefixes
    "core": (
        *GUI,
        "prometheus_client",
        "heartbeat_tray.tray",
        "heartbeat_tray.dialog",
        "heartbeat_tray.cli",
    ),
    "posthog": (*GUI, "heartbeat_tray.tray", "heartbeat_tray.dialog", "heartbeat_tray.cli"),
    "system": ("heartbeat_tray.tray", "heartbeat_tray.dialog", "heartbeat_tray.cli"),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def violations(folder: str) -> list[str]:
    forbidden = RULES[folder]
    bad = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for line, module in imports_of(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(RULES))
def test_each_layer_imports_only_what_it_may(folder: str) -> None:
    assert violations(folder) == []


def test_the_rule_catches_an_offending_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "heartbeat_tray"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "leak.py").write_text("def f():\n    import pystray.tray\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert violations("core") == ["heartbeat_tray/core/leak.py:2 imports pystray.tray"]


def test_the_engine_is_the_one_place_run_and_the_tray_build_the_ticker() -> None:
    builders = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "Ticker(" in path.read_text(encoding="utf-8") and path.parent.name != "core"
    ]
    assert builders == ["heartbeat_tray/engine.py"]


def test_a_heartbeat_without_metrics_does_not_load_the_prometheus_client() -> None:
    """Imported only when metrics are on: it costs every `run` and tray 1.4 MiB otherwise
    (measured in the idle benchmark, where `run` went over the SDK peer's RSS)."""
    import subprocess

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, heartbeat_tray.engine, heartbeat_tray.cli.run, heartbeat_tray.tray.app; "
            "print('prometheus_client' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.stdout.strip() == "False", loaded.stderr
