"""Counts over every subject for /metrics, taken in slices and reused for a while.

Counting a million subjects costs ~0.5 s of CPU: done in one go it would stall the
event loop (beats, timers, the lease) for that long at every scrape.  A :class:`Tally`
counts slice by slice with a yield between, shares one count among scrapes that
arrive while it runs, and reuses the last for a while afterwards (at least
``min_reuse_s``, longer when counting is dear), so scrapes back to back cost at most
a fifth of a core.  The figures describe the fleet as of ``taken_at``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from heartbeat.engine import Health
from heartbeat.quiet import QuietKind
from heartbeat.subjects import Track


@dataclass
class Counts:
    """What one pass over the subjects found; ``add`` sums slices."""

    health: Counter[Health] = field(default_factory=Counter)
    quiet: Counter[QuietKind] = field(default_factory=Counter)
    unrouted: int = 0

    def add(self, other: Counts) -> None:
        self.health.update(other.health)
        self.quiet.update(other.quiet)
        self.unrouted += other.unrouted


CountSlice = Callable[[Sequence[Track], float], Counts]
"""Counts one slice of tracks at ``now`` (the monitor's rules: health, quiet, routes)."""


class Tally:
    def __init__(
        self,
        tracks: Callable[[], Collection[Track]],
        count: CountSlice,
        clock: Callable[[], float],
        *,
        slice_size: int = 20_000,
        min_reuse_s: float = 1.0,
        reuse_factor: float = 4.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracks = tracks
        self._count = count
        self._clock = clock
        self._monotonic = monotonic
        self.slice_size = slice_size
        self.min_reuse_s = min_reuse_s
        self.reuse_factor = reuse_factor
        self.last: Counts | None = None
        self.taken_at = 0.0  # clock() of the last count
        self.cost_s = 0.0  # how long the last count took, start to end
        self.passes = 0
        self._done_at = 0.0  # monotonic
        self._running: asyncio.Future[Counts] | None = None

    def fresh(self) -> bool:
        reuse = max(self.min_reuse_s, self.reuse_factor * self.cost_s)
        return self.last is not None and self._monotonic() - self._done_at < reuse

    async def counts(self) -> Counts:
        """The last count while it is fresh, else a new one (shared with other callers)."""
        if self.fresh():
            assert self.last is not None
            return self.last
        if self._running is None:
            self._running = asyncio.ensure_future(self._pass())
        # shield: one caller giving up (a client gone) does not cancel the others' count
        return await asyncio.shield(self._running)

    async def _pass(self) -> Counts:
        try:
            started = self._monotonic()
            now = self._clock()
            tracks = list(self._tracks())  # a copy: subjects come and go between slices
            total = Counts()
            for i in range(0, len(tracks), self.slice_size):
                if i:
                    await asyncio.sleep(0)
                total.add(self._count(tracks[i : i + self.slice_size], now))
            self.last, self.taken_at, self.passes = total, now, self.passes + 1
            self._done_at = self._monotonic()
            self.cost_s = self._done_at - started
            return total
        finally:
            self._running = None
