"""``scripts/soak.py --minutes 1``: a one-minute chaos soak passes its own invariants.

The soak (a 3-node cluster, 3 monitor processes, 30 flapping agents, junk, monitor and NATS
faults, a flaky webhook) decides what is required; this test holds it to exit 0 and checks
that the JSON it wrote shows something was told, nothing false and nothing missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import cli_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(170)
def test_one_minute_soak_tells_every_transition_and_nothing_false(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "1",
         "--quiet-timeout", "30", "--out", str(out), "--work-dir", str(work)],
        capture_output=True, text=True, timeout=160, cwd=tmp_path, env=cli_env(),
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    print(proc.stdout)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    doc = json.loads(out.read_text())
    figures = doc["figures"]
    assert doc["passed"] is True, doc["failures"]
    assert figures["transitions_delivered"] > 0, figures
    assert figures["false_alerts"] == 0, doc["details"]["false_alerts"]
    assert figures["missing"] == 0, (
        doc["details"]["missing_alerts"],
        doc["details"]["missing_resolved"],
    )
    assert figures["faults_total"] > 0, figures  # chaos happened
    assert "transitions_expected" in proc.stdout  # the table was printed
