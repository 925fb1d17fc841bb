"""The benchmark harness works end to end (a short run; benchmarks are not timed tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402

pytestmark = pytest.mark.bench


def test_every_scenario_produces_figures_for_ours_and_the_peer(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    table = out.read_text()
    scenarios = (
        "idle",
        "idle with the ingestion check",
        "tray idle",
        "SNI tray idle",
        "accuracy",
        "backlog",
        "one-shot",
        "break downstream → alert",
    )
    for scenario in scenarios:
        assert f"| {scenario}" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "scenario" not in line]
    assert len(rows) == 29  # every figure of every scenario
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] != "—", row  # every figure of ours was measured
        if not cells[0].startswith("tray"):  # the SNI tray's peer is the xorg tray
            assert cells[3] != "—", row  # and the peer's, where there is a peer
