"""heartbeat.tally: counts over every subject, in slices, shared and reused briefly."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from heartbeat.engine import Health
from heartbeat.quiet import QuietKind
from heartbeat.subjects import Track
from heartbeat.tally import Counts, Tally


class Fleet:
    """Tracks, and a count function that records the slices it was given."""

    def __init__(self, n: int) -> None:
        self.tracks = {f"hb.s{i}": Track(subject=f"hb.s{i}") for i in range(n)}
        self.slices: list[int] = []
        self.mono = 0.0

    def count(self, tracks: Sequence[Track], now: float) -> Counts:
        self.slices.append(len(tracks))
        self.mono += 0.1  # each slice "takes" 0.1 s
        quiet = Counter({QuietKind.SILENCED: sum(t.subject.endswith("7") for t in tracks)})
        return Counts(health=Counter({Health.OK: len(tracks)}), quiet=quiet, unrouted=1)

    def tally(self, **kw: float) -> Tally:
        return Tally(self.tracks.values, self.count, lambda: 1000.0, slice_size=10,
                     monotonic=lambda: self.mono, **kw)  # fmt: skip


async def test_a_pass_counts_every_subject_slice_by_slice() -> None:
    fleet = Fleet(35)
    got = await fleet.tally().counts()
    assert fleet.slices == [10, 10, 10, 5]
    assert got.health == {Health.OK: 35}
    assert got.quiet == {QuietKind.SILENCED: 3}  # s7, s17, s27
    assert got.unrouted == 4  # summed over the slices


async def test_the_event_loop_runs_between_slices_and_new_subjects_do_not_break_a_pass() -> None:
    fleet = Fleet(30)
    tally = fleet.tally()
    seen_between: list[int] = []

    async def meanwhile() -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # the pass has taken its copy of the tracks
            seen_between.append(len(fleet.slices))
            fleet.tracks[f"hb.new{len(fleet.tracks)}"] = Track(subject="hb.new")

    got, _ = await asyncio.gather(tally.counts(), meanwhile())
    assert got.health == {Health.OK: 30}  # the subjects as the pass began
    assert 1 in seen_between or 2 in seen_between  # ran while the pass was under way


async def test_callers_during_a_pass_share_it_and_a_fresh_count_is_reused() -> None:
    fleet = Fleet(30)
    tally = fleet.tally(min_reuse_s=1.0, reuse_factor=4.0)
    a, b = await asyncio.gather(tally.counts(), tally.counts())
    assert a is b and tally.passes == 1 and len(fleet.slices) == 3
    assert abs(tally.cost_s - 0.3) < 1e-9
    fleet.mono += 1.1  # past min_reuse_s, but within 4 x the 0.3 s a pass cost
    assert await tally.counts() is a and tally.passes == 1
    fleet.mono += 0.2  # now past 1.2 s
    assert await tally.counts() is not a and tally.passes == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_pass_for_others() -> None:
    fleet = Fleet(30)
    tally = fleet.tally()
    first = asyncio.ensure_future(tally.counts())
    second = asyncio.ensure_future(tally.counts())
    await asyncio.sleep(0)
    first.cancel()
    got = await second
    assert got.health == {Health.OK: 30} and tally.passes == 1
