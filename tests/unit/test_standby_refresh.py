"""A standby's schedule upkeep (Monitor._refresh_schedule) moves every early deadline a
tick always moved, in slices that let the event loop run between them (at 1M subjects
one pass held it ~1.2 s, and a takeover's lease read waited behind it)."""

from __future__ import annotations

import asyncio

from heartbeat import monitor as monitor_module
from heartbeat.monitor import Monitor
from tests.harness import monitor_config
from tests.unit.test_subjects import CFG, T0, TOLERANCE, WINDOW, mkbeat, mkrecord


def standby(beating: int, silent: int) -> Monitor:
    mon = Monitor(monitor_config("refresh", tolerance_s=TOLERANCE), [])
    mon.subjects.cfg = CFG
    for i in range(beating + silent):
        subject = f"hbrefresh.s{i:06d}"
        mon.subjects.set_record(subject, mkrecord(subject, at=T0), 1)
        if i < beating:
            mon.subjects.on_beat(subject, mkbeat(T0 + 1))  # before its deadline: left early
    return mon


async def test_every_early_deadline_is_moved_in_slices_that_yield() -> None:
    beating = monitor_module.REFRESH_SLICE * 3 + 17
    mon = standby(beating, silent=5)
    yields = 0
    done = asyncio.Event()

    async def count_yields() -> None:
        nonlocal yields
        while not done.is_set():
            yields += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_yields())
    await asyncio.sleep(0)
    before = yields
    await mon._refresh_schedule(T0 + 2.5)
    done.set()
    await counter
    assert yields - before >= 3  # the loop ran between the slices
    moved = [t for t in mon.subjects.tracks.values() if t.due == T0 + 1 + WINDOW + TOLERANCE]
    assert len(moved) == beating
    assert sorted(mon.subjects.take_due(T0 + 2.5)) == [f"hbrefresh.s{i:06d}" for i in
                                                        range(beating, beating + 5)]  # fmt: skip


async def test_a_tick_moves_at_most_its_slices_and_stops_on_the_truly_due() -> None:
    per_tick = monitor_module.REFRESH_SLICE * monitor_module.REFRESH_SLICES
    mon = standby(per_tick + 100, silent=0)
    await mon._refresh_schedule(T0 + 2.5)
    early = [t for t in mon.subjects.tracks.values() if t.due == T0 + WINDOW + TOLERANCE]
    assert len(early) == 100  # the next tick's
    await mon._refresh_schedule(T0 + 2.5)
    assert mon.subjects.schedule.next_due() == T0 + 1 + WINDOW + TOLERANCE
    silent = standby(0, silent=monitor_module.REFRESH_SLICE * 2)
    await silent._refresh_schedule(T0 + 2.5)  # nothing to move: one slice, then done
    assert len(silent.subjects.take_due(T0 + 2.5)) == monitor_module.REFRESH_SLICE * 2
