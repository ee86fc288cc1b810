"""``scripts/storm.py --subjects 300`` runs end to end against the real monitor CLI.

Checks that every subject is told exactly once per alert and once per resolve (no
duplicates, none missing) and that the JSON holds every figure; how fast is what the
script reports, not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import cli_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from storm import ROWS  # noqa: E402


@pytest.mark.timeout(150)
def test_storm_300_tells_every_subject_once(tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "storm.py"), "--subjects", "300",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=cli_env(),
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    (run,) = json.loads(out.read_text())["runs"]
    assert run["subjects"] == 300 and "error" not in run, run
    for phase in ("alert", "resolve"):
        figures = run[phase]
        assert figures["told"] == 300, (phase, figures)
        assert figures["missing"] == 0, (phase, figures)
        assert figures["duplicates"] == 0, (phase, figures)
        assert figures["posts"] >= 1, (phase, figures)
    for phase, key, _label in ROWS:
        assert run[phase][key] is not None, (phase, key)
    assert run["alert"]["committed_all_s"] >= 0
    assert "N=300" in proc.stdout
