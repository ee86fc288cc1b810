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
from typing import Any

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
    "fresh_listed_s",
    "fresh_busy_after_s",
    "fresh_recorded_s",
    "fresh_rss_per_subject_bytes",
    "fresh_idle_cpu_s_per_s",
    "fresh_get_all_s",
    "fresh_get_alert_ms",
}
SCALE = {
    "scale_rss_per_subject_bytes",
    "scale_startup_ready_s",
    "scale_takeover_s",
    "scale_metrics_ms",
    "scale_get_alert_ms",
    "scale_kv_writes_per_s",
    "scale_decision_p99_ms",
    "scale_alert_delay_p99_ms",
}


def run_bench(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text()), proc.stdout


def assert_measured(figures: dict[str, Any], keys: set[str]) -> None:
    assert set(figures) >= keys, f"missing: {sorted(keys - set(figures))}"
    for key in keys:
        fig = figures[key]
        assert not fig["error"], f"{key}: {fig['error']}"
        assert isinstance(fig["value"], int | float) and math.isfinite(fig["value"]), (key, fig)
        assert fig["passed"] in (True, False, None), (key, fig)


@pytest.mark.timeout(180)
def test_bench_quick_measures_every_figure(tmp_path: Path) -> None:
    doc, stdout = run_bench(tmp_path, "--quick")
    assert doc["mode"] == "quick"
    assert_measured(doc["figures"], FIGURES)
    assert not set(doc["figures"]) & SCALE  # --subjects N only
    assert "figure" in stdout and "target" in stdout  # the table was printed


@pytest.mark.timeout(180)
def test_bench_subjects_mode_measures_every_scale_figure(tmp_path: Path) -> None:
    doc, stdout = run_bench(tmp_path, "--subjects", "1500")
    assert doc["mode"] == "subjects-1500"
    assert_measured(doc["figures"], SCALE)
    assert doc["figures"]["scale_alert_delay_p99_ms"]["details"]["watched_subjects"] >= 1500
    assert "9. scale" in stdout


SIDE = {
    "side_listed_s",
    "side_busy_after_s",
    "side_rss_per_subject_bytes",
    "side_idle_cpu",
    "side_get_s",
}


@pytest.mark.timeout(150)
def test_bench_side_measures_a_monitor_process(tmp_path: Path) -> None:
    """The figure side alone, on `nats-heartbeat monitor` (the Go tool's run needs its binary)."""
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--only", "side",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=cli_env(),
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == SIDE  # no Go rows without --go-monitor
    for key in SIDE:
        assert not figures[key]["error"], (key, figures[key]["error"])
        assert math.isfinite(figures[key]["value"]) and figures[key]["value"] >= 0, key
    details = figures["side_listed_s"]["details"]
    assert details["stream_messages"] == details["subjects"] == details["listed_by_last_get"]
    # The first run's listing and one more burst's (--quick), their median the figure.
    each = details["listed_s_each"]
    assert len(each) == 2
    assert figures["side_listed_s"]["value"] == pytest.approx(sum(each) / 2, abs=1e-3)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--go-monitor", "/nonexistent/monitor"], "is not an executable file"),
        (["--go-monitor", str(ROOT / "scripts")], "is not an executable file"),
    ],
)
def test_bench_refuses_a_bad_go_monitor_before_starting(args: list[str], says: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
        capture_output=True, text=True, timeout=30, env=cli_env(), stdin=subprocess.DEVNULL,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert says in proc.stderr and "==>" not in proc.stderr  # nothing was started
