"""``scripts/bench.py --quick`` runs end to end and reports every figure.

Only that the benchmark works is checked here: whether each figure meets its target
is what the benchmark itself reports (on this machine, at full size), not a test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import cli_env

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "ingest_raw_rate",
    "ingest_monitor_rate",
    "ingest_ratio",
    "detect_decision_p99_ms",
    "detect_arrival_p99_ms",
    "eval_tick_cpu_ms",
    "eval_reconcile_tick_cpu_ms",
    "rss_per_subject_bytes",
    "kv_writes_per_beat",
    "startup_ready_s",
    "failover_kill_s",
    "failover_term_s",
    "wrongly_retired",
}


@pytest.mark.timeout(150)
def test_bench_quick_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    figures = doc["figures"]
    assert set(figures) >= FIGURES, f"missing: {sorted(FIGURES - set(figures))}"
    for key in FIGURES:
        fig = figures[key]
        assert not fig["error"], f"{key}: {fig['error']}"
        assert isinstance(fig["value"], int | float) and math.isfinite(fig["value"]), (key, fig)
        assert fig["passed"] in (True, False, None), (key, fig)
    assert "figure" in proc.stdout and "target" in proc.stdout  # the table was printed
