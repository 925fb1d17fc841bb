"""The layout is the architecture: dependencies point inward, and the import graph says so.

Every module's imports (the ones inside functions too) are read with ``ast``. A package may
import only the packages its row of ``ALLOWED`` names; no two packages, and no two modules, may
import each other round a cycle; the core reaches for no toolkit. Each failure names the file
and line. The tests at the end prove the checks fail when they should.

The graph (``python -m tests.test_architecture`` prints what the code has now)::

    version  ← the package's __version__, imported by anyone
    core       vocabulary, rules, the interfaces it needs (ports), the state file
    net        the HTTP client with a deadline               → core
    posthog    capture, key check, query API                 → core, net
    system     keyring, files, webhook, OS, UI hand-off      → core, net
    ingestion  the check: rules, poller, alerts, webhooks    → core
    engine     builds core + ingestion from the adapters     → core, ingestion, posthog, system
    tray       the tray icon and menu                        → core, engine, system
    dialog     the Tk settings and history windows           → core, ingestion, posthog, system
    cli        the commands                                  → everything but main
    main       ``python -m heartbeat_tray``                  → cli, tray
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "heartbeat_tray"

ALLOWED: dict[str, frozenset[str]] = {
    "version": frozenset(),
    "core": frozenset({"version"}),
    "net": frozenset({"version", "core"}),
    "posthog": frozenset({"version", "core", "net"}),
    "system": frozenset({"version", "core", "net"}),
    "ingestion": frozenset({"core"}),
    "engine": frozenset({"core", "ingestion", "posthog", "system"}),
    "tray": frozenset({"version", "core", "engine", "system"}),
    "dialog": frozenset({"version", "core", "ingestion", "posthog", "system"}),
    "cli": frozenset(
        {"version", "core", "net", "posthog", "system", "ingestion", "engine", "tray", "dialog"}
    ),
    "main": frozenset({"cli", "tray"}),
}

GUI = ("pystray", "tkinter", "PIL", "keyring", "Xlib", "gi", "PyObjCTools")
# Third-party imports a package must not make, beyond the edges above.
FORBIDDEN_LIBRARIES = {
    "core": (*GUI, "prometheus_client", "httpx", "httpcore"),
    "ingestion": (*GUI, "prometheus_client", "httpx", "httpcore"),
    "posthog": GUI,
    "net": GUI,
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def package_of(module: str) -> str | None:
    """The graph's node for a module of ours; None for anything else."""
    parts = module.split(".")
    if parts[0] != "heartbeat_tray":
        return None
    if len(parts) == 1:
        return "version"
    return {"__main__": "main"}.get(parts[1], parts[1])


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            # ``from heartbeat_tray.core import outbox`` imports the module outbox
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def module_edges(root: Path) -> dict[str, dict[str, str]]:
    """module → {module it imports: "file:line"}, for the modules of ours that exist."""
    files = sorted(root.rglob("*.py"))
    ours = {module_name(path, root) for path in files}
    edges: dict[str, dict[str, str]] = {}
    for path in files:
        source = module_name(path, root)
        where = str(path.relative_to(root.parent))
        for line, target in imports_of(path):
            if target in ours and target != source:
                edges.setdefault(source, {}).setdefault(target, f"{where}:{line}")
    return edges


def package_edges(root: Path) -> dict[tuple[str, str], str]:
    """(package, package it imports) → the first "file:line" that does."""
    found: dict[tuple[str, str], str] = {}
    for source, targets in module_edges(root).items():
        for target, where in targets.items():
            a, b = package_of(source), package_of(target)
            if a and b and a != b:
                found.setdefault((a, b), where)
    return found


def edge_violations(root: Path) -> list[str]:
    bad = []
    for (a, b), where in sorted(package_edges(root).items()):
        if a not in ALLOWED:
            bad.append(f"{where}: package {a!r} has no row in ALLOWED")
        elif b not in ALLOWED[a]:
            bad.append(f"{where}: {a} imports {b}, which {a} may not")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def graph_of(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
    return graph


def package_cycles(root: Path) -> list[list[str]]:
    return cycles(graph_of(package_edges(root)))


def module_cycles(root: Path) -> list[list[str]]:
    edges = module_edges(root)
    return cycles(graph_of((a, b) for a, targets in edges.items() for b in targets))


def library_violations(root: Path) -> list[str]:
    bad = []
    for folder, forbidden in FORBIDDEN_LIBRARIES.items():
        for path in sorted((root / folder).rglob("*.py")):
            for line, module in imports_of(path):
                if any(module == f or module.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return bad


def test_each_package_imports_only_the_packages_its_row_allows() -> None:
    assert edge_violations(PACKAGE) == []


def test_no_packages_import_each_other_round_a_cycle() -> None:
    assert package_cycles(PACKAGE) == []


def test_no_modules_import_each_other_round_a_cycle() -> None:
    assert module_cycles(PACKAGE) == []


def test_the_core_and_the_check_reach_for_no_toolkit_and_no_http() -> None:
    assert library_violations(PACKAGE) == []


def test_every_folder_is_a_package_of_the_graph() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders <= set(ALLOWED)


# --- the checks fail when they should ---


def fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "heartbeat_tray"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root


def test_an_edge_the_matrix_does_not_allow_fails_naming_its_line(tmp_path: Path) -> None:
    root = fake_package(
        tmp_path,
        {
            "core/ticker.py": (
                "import logging\n\ndef f():\n    from heartbeat_tray.posthog import capture\n"
            ),
            "posthog/capture.py": "from heartbeat_tray.core.verdicts import Verdict\n",
            "core/verdicts.py": "",
        },
    )
    assert edge_violations(root) == [
        "heartbeat_tray/core/ticker.py:4: core imports posthog, which core may not"
    ]
    assert package_cycles(root) == [["core", "posthog"]]


def test_a_cycle_between_modules_of_one_package_fails(tmp_path: Path) -> None:
    root = fake_package(
        tmp_path,
        {
            "system/keystore.py": "from heartbeat_tray.system import key_handover\n",
            "system/key_handover.py": (
                "def f():\n    from heartbeat_tray.system.keystore import x\n"
            ),
        },
    )
    assert edge_violations(root) == []
    assert module_cycles(root) == [
        ["heartbeat_tray.system.key_handover", "heartbeat_tray.system.keystore"]
    ]


def test_a_toolkit_in_the_core_fails(tmp_path: Path) -> None:
    root = fake_package(tmp_path, {"core/leak.py": "def f():\n    import pystray.tray\n"})
    assert library_violations(root) == ["heartbeat_tray/core/leak.py:2 imports pystray.tray"]


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


def reachable_from(root: Path, start: str) -> set[str]:
    """The modules of ours that ``start`` imports, directly or not, inside functions too: what
    PyInstaller's analysis finds (it reads every import in the bytecode), and no more."""
    edges = module_edges(root)
    seen, todo = {start}, [start]
    while todo:
        for target in edges.get(todo.pop(), {}):
            # importing a.b.c runs a/__init__ and a/b/__init__ as well
            parts = target.split(".")
            for n in range(1, len(parts) + 1):
                name = ".".join(parts[:n])
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
    return seen


def test_every_command_loads_its_handler() -> None:
    from heartbeat_tray.cli.parser import build_parser, load_handler

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "==SUPPRESS==" and a.choices).choices
    assert commands is not None
    for name in commands:
        assert callable(load_handler(name)), name


def test_the_build_sees_every_command_module_without_being_told() -> None:
    """The commands' modules are imported in functions, so that ``once`` stays cheap; written
    as imports, the frozen app's analysis finds them from ``__main__`` (build.spec lists only
    what no import names: the backends pystray picks by name)."""
    reached = reachable_from(PACKAGE, "heartbeat_tray.__main__")
    commands = {module_name(path, PACKAGE) for path in (PACKAGE / "cli").glob("*.py")}
    assert commands - reached == set()
    hidden = {"heartbeat_tray.system.metrics", "heartbeat_tray.dialog.view"}
    assert hidden <= reached  # the lazily imported adapters too


def test_a_module_imported_from_a_string_is_not_seen(tmp_path: Path) -> None:
    root = fake_package(
        tmp_path,
        {
            "__main__.py": "def main():\n    from heartbeat_tray.cli import parser\n",
            "cli/parser.py": "import importlib\n\ndef load():\n"
            "    return importlib.import_module('heartbeat_tray.cli.send')\n",
            "cli/send.py": "",
        },
    )
    reached = reachable_from(root, "heartbeat_tray.__main__")
    assert "heartbeat_tray.cli.parser" in reached
    assert "heartbeat_tray.cli.send" not in reached


if __name__ == "__main__":
    for (a, b), where in sorted(package_edges(PACKAGE).items()):
        print(f"{a:10} → {b:10} {where}")
