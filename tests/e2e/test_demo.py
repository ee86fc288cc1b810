"""./scripts/demo stops on SIGTERM (or Ctrl-C) within 5 s, children included."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 5.0


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Demo:
    def __init__(self) -> None:
        # scripts/demo sets up .venv and execs this very file, keeping the pid: what a
        # signal to ./scripts/demo reaches.
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--forever"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: the test can signal it like a terminal
            env={k: v for k, v in os.environ.items() if k != "NATS_URL"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.output.append(line)
                self.lines.put(line)

    def wait_for(self, texts: tuple[str, ...], timeout: float = 60.0) -> None:
        """Until each of ``texts`` appeared in some line."""
        deadline = time.monotonic() + timeout
        missing = set(texts)
        while missing:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {missing} in:\n{''.join(self.output)}") from None
            missing = {t for t in missing if t not in line}


@pytest.fixture
def demo() -> Iterator[Demo]:
    d = Demo()
    yield d
    with contextlib.suppress(ProcessLookupError):  # orphans keep the group: kill them too
        os.killpg(d.proc.pid, signal.SIGKILL)
    d.proc.wait(10)
    d.reader.join(10)


def test_scripts_demo_execs_demo_py() -> None:
    script = (ROOT / "scripts" / "demo").read_text()
    assert 'exec "$VENV/bin/python" "$ROOT/scripts/demo.py" "$@"' in script


# Every agent publishing (a child still importing Python turns a SIGINT into a traceback).
RUNNING = ("[api] publishing", "[worker] publishing", "[flaky] publishing", "[nats]")
STARTING = ("==> monitor status",)


@pytest.mark.parametrize(
    ("sig", "to_group", "when"),
    [
        pytest.param(signal.SIGTERM, False, RUNNING, id="sigterm-to-the-script"),
        pytest.param(signal.SIGTERM, True, RUNNING, id="sigterm-to-the-group"),
        pytest.param(signal.SIGINT, True, RUNNING, id="ctrl-c"),
        pytest.param(signal.SIGTERM, False, STARTING, id="sigterm-while-starting"),
    ],
)
def test_demo_stops_with_its_children_within_5s(
    demo: Demo, sig: int, to_group: bool, when: tuple[str, ...]
) -> None:
    demo.wait_for(when)
    children = descendants(demo.proc.pid)
    assert len(children) >= 2, children  # nats-server and the monitor at least
    signalled = time.monotonic()
    if to_group:
        os.killpg(demo.proc.pid, sig)
    else:
        demo.proc.send_signal(sig)
    code = demo.proc.wait(LIMIT_S + 5)
    took = time.monotonic() - signalled
    while any(alive(p) for p in children) and time.monotonic() - signalled < LIMIT_S + 5:
        time.sleep(0.05)
    gone_after = time.monotonic() - signalled
    assert took < LIMIT_S, f"demo took {took:.1f}s"
    assert gone_after < LIMIT_S, [p for p in children if alive(p)]
    assert code == 0, "".join(demo.output)
    out = "".join(demo.output)
    assert "Traceback" not in out, out
    assert "==> stopped" in out
