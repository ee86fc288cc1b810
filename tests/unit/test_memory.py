"""Returning freed memory to the system (cli.memory): the trim loop, and on glibc that
a trim really shrinks a process whose heap holds freed pages."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest

from cli import memory


async def test_trims_every_period_until_stopped() -> None:
    stop = asyncio.Event()
    calls = 0

    def trim() -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:
            stop.set()
        return True

    await asyncio.wait_for(memory.trim_periodically(stop, every_s=0.001, trim=trim), 10)
    assert calls == 3


async def test_a_stop_before_the_first_period_trims_nothing() -> None:
    stop = asyncio.Event()
    stop.set()
    called: list[bool] = []
    await asyncio.wait_for(
        memory.trim_periodically(stop, every_s=60.0, trim=lambda: called.append(True) or True), 1
    )
    assert called == []


async def test_without_malloc_trim_it_returns_at_once() -> None:
    await asyncio.wait_for(memory.trim_periodically(asyncio.Event(), every_s=0.001, trim=None), 1)


async def test_a_failing_trim_is_logged_once_and_ends_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def trim() -> bool:
        nonlocal calls
        calls += 1
        raise OSError("no")

    with caplog.at_level(logging.ERROR, logger="cli.memory"):
        await asyncio.wait_for(
            memory.trim_periodically(asyncio.Event(), every_s=0.001, trim=trim), 10
        )
    assert calls == 1
    assert [r.message for r in caplog.records] == ["returning freed memory failed"]


# Frees every other one of 1,000 64 KiB buffers: the kept ones hold the freed ones apart,
# so glibc can neither merge them into the heap's top nor give them back by itself; then
# trims.  A fresh process: the suite's own heap would make the figure meaningless.
PROBE = textwrap.dedent(
    """
    import os
    from cli.memory import trim_free_memory

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    buffers = [b"x" * 65536 for _ in range(1000)]
    kept = buffers[1::2]
    del buffers
    before = rss()
    trimmed = trim_free_memory()
    print(trimmed, before - rss(), len(kept))
    """
)


@pytest.mark.skipif(memory.trim_free_memory is None, reason="no glibc malloc_trim here")
def test_a_trim_gives_freed_heap_pages_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) > 16 * 2**20  # of the ~32 MiB freed (0 untrimmed)
