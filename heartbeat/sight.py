"""Whether a replica can see the data path (DESIGN section 6).

A replica is blind while NATS is disconnected, or when its heartbeat consumer has
messages pending without progress for two checks in a row.  Reconnecting is not
sight: sight returns once every feed reports nothing pending.  Silence observed
while blind proves nothing, so the engine counts windows from ``sight_since``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from heartbeat.feed import Feed
from heartbeat.notification import EventKind

log = logging.getLogger(__name__)

Notice = Callable[[EventKind, float, float], Awaitable[None]]


class Sight:
    def __init__(
        self,
        replica_id: str,
        *,
        clock: Callable[[], float],
        connected: Callable[[], bool],
        leading: Callable[[], bool],
        feeds: Callable[[], Sequence[Feed]],
        notice: Notice,
        blind_after_s: float,
        stall_check_s: float,
    ) -> None:
        self.replica_id = replica_id
        self.clock = clock
        self.connected = connected
        self.leading = leading
        self.feeds = feeds  # the heartbeat feed first: it is the one checked for stalls
        self.notice = notice
        self.blind_after_s = blind_after_s
        self.stall_check_s = stall_check_s
        self.sight_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.blind_since: float | None = None
        self.led_when_blinded = False
        self.notice_sent = False
        self.awaiting = False  # reconnected, feeds not yet caught up
        self._stall_seq = -1
        self._stall_strikes = 0
        self._next_check = 0.0

    @property
    def blind(self) -> bool:
        return self.blind_since is not None

    def blinded(self, why: str) -> None:
        if self.blind_since is None:
            self.blind_since = self.clock()
            self.led_when_blinded = self.leading()
            log.warning("monitor %s: blind (%s)", self.replica_id, why)

    def reconnected(self) -> None:
        self.awaiting = True
        log.info("monitor %s: reconnected; catching up before judging", self.replica_id)

    async def caught_up(self) -> bool:
        """Every feed says the server has nothing more to deliver."""
        for feed in self.feeds():
            if await feed.pending() != 0:
                return False
        return True

    async def check(self, now: float) -> None:
        """Once per tick: blind notice, sight restored, or a stall check."""
        if self.blind_since is not None:
            if (
                not self.notice_sent
                and self.led_when_blinded
                and now - self.blind_since >= self.blind_after_s
            ):
                self.notice_sent = True
                await self.notice(EventKind.BLIND, self.blind_since, now)
            if self.connected() and self.awaiting and await self.caught_up():
                await self._restored(now)
            return
        if not self.connected() or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self.stall_check_s
        feed = self.feeds()[0]
        pending = await feed.pending()
        seq = feed.last_stream_seq
        stalled = pending is None or (pending > 0 and seq == self._stall_seq)
        self._stall_strikes = self._stall_strikes + 1 if stalled else 0
        self._stall_seq = seq
        if self._stall_strikes >= 2:
            self.blinded(f"heartbeat consumer stalled, {pending} message(s) pending")
            self.awaiting = True

    async def _restored(self, now: float) -> None:
        assert self.blind_since is not None
        log.info(
            "monitor %s: sight restored after %.1fs; subjects need a full window of silence "
            "from now before they alert",
            self.replica_id,
            now - self.blind_since,
        )
        if self.notice_sent:
            await self.notice(EventKind.SIGHT_RESTORED, self.blind_since, now)
        self._reset()
        self.sight_since = now
