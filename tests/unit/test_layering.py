"""The library stays a library: no click, no logging set-up, no environment, no exits."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "heartbeat"


def test_importing_the_library_does_not_import_click() -> None:
    code = (
        "import sys, heartbeat, heartbeat.monitor, heartbeat.metrics; print('click' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            module = getattr(node, "module", None) or ""
            names.update(f"import {module or a.name}" for a in node.names)
    return names


def test_library_modules_leave_process_concerns_to_the_cli() -> None:
    forbidden = {
        "import click",
        "logging.basicConfig",
        "os.environ",
        "os.getenv",
        "sys.exit",
    }
    for path in sorted(LIB.rglob("*.py")):
        used = _calls(ast.parse(path.read_text())) & forbidden
        assert not used, f"{path.relative_to(LIB.parent)} uses {sorted(used)}"
