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


def _imports(path: Path) -> set[str]:
    """The heartbeat modules ``path`` imports (at any level, TYPE_CHECKING included);
    ``from pkg import mod`` counts as importing ``pkg.mod`` when that is a module."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("heartbeat"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_module = (LIB.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                out.add(sub if is_module else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("heartbeat"))
    return out


def _module(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_among_library_modules() -> None:
    graph = {_module(p): _imports(p) for p in LIB.rglob("*.py")}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(mod: str, path: list[str]) -> None:
        if state.get(mod) == 2:
            return
        assert state.get(mod) != 1, "import cycle: " + " -> ".join([*path, mod])
        state[mod] = 1
        for dep in sorted(graph.get(mod, ())):
            if dep != "heartbeat" and dep in graph:  # the package's __init__ re-exports
                visit(dep, [*path, mod])
        state[mod] = 2

    for mod in sorted(graph):
        visit(mod, [])
