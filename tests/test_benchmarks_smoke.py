"""The benchmark harness works end to end (a short run; benchmarks are not timed tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402

pytestmark = pytest.mark.bench


@pytest.mark.timeout(900)  # one short run of each scenario; noticing a break takes minutes
def test_every_scenario_produces_figures_for_ours_and_the_peer(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "commit " in text.splitlines()[2]  # the results say which code they measured
    scenarios = (
        "idle",
        "idle with the ingestion check",
        "idle with metrics on, not scraped",
        "tray idle",
        "SNI tray idle",
        "accuracy",
        "backlog",
        "one-shot",
        "nothing stored from a break on",
        "heartbeats dropped, the project's other events still stored",
        "every event stored, 9 s late",
        "break downstream, simulated clock",
    )
    for scenario in scenarios:
        assert f"| {scenario}" in text, scenario
    rows = [line for line in text.splitlines() if line.startswith("| ") and "scenario" not in line]
    assert len(rows) == 37  # every figure of every scenario
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] != "—", row  # every figure of ours was measured
        if cells[3] != "—":  # where a peer is named, its figure is there, and how it was had
            assert cells[4] != "—" and cells[5], row
