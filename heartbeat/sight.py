"""Whether a replica can see the data path (DESIGN section 6), as a pure state machine.

A replica is blind while NATS is disconnected, or when its heartbeat consumer has
messages pending without progress for two checks in a row.  Reconnecting is not
sight: sight returns once every feed reports nothing pending.  Silence observed
while blind proves nothing, so the engine counts windows from ``sight_since``.

:class:`Sight` only decides; the monitor asks the feeds and sends the notices it
calls for.  Times are passed in: ``now`` epoch seconds, ``mono`` monotonic.
"""

from __future__ import annotations


class Sight:
    def __init__(self, *, blind_after_s: float, stall_check_s: float) -> None:
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

    def blinded(self, now: float, *, leading: bool) -> bool:
        """Sight was lost at ``now``; True if this starts a blind period."""
        if self.blind_since is not None:
            return False
        self.blind_since, self.led_when_blinded = now, leading
        return True

    def reconnected(self) -> None:
        self.awaiting = True

    def blind_notice_due(self, now: float) -> bool:
        """Whether to send the one "blind" notice now (only the replica that led does)."""
        if (
            self.blind_since is None
            or self.notice_sent
            or not self.led_when_blinded
            or now - self.blind_since < self.blind_after_s
        ):
            return False
        self.notice_sent = True
        return True

    def may_restore(self, *, connected: bool) -> bool:
        """Whether to ask the feeds if they caught up (then call :meth:`restored`)."""
        return self.blind_since is not None and connected and self.awaiting

    def restored(self, now: float) -> tuple[float, bool]:
        """Sight is back at ``now``: (how long it was blind, whether to send the
        "sight restored" notice).  Deadlines count from ``now`` from here on."""
        blind_for = now - (self.blind_since if self.blind_since is not None else now)
        notify = self.notice_sent
        self._reset()
        self.sight_since = now
        return blind_for, notify

    def stall_check_due(self, mono: float, *, connected: bool) -> bool:
        """Whether to sample the heartbeat consumer now (every ``stall_check_s``)."""
        if self.blind_since is not None or not connected or mono < self._next_check:
            return False
        self._next_check = mono + self.stall_check_s
        return True

    def stall_sample(self, now: float, pending: int | None, seq: int, *, leading: bool) -> bool:
        """One sample of the consumer (``pending`` None: it could not say); True when
        it has been stuck for two samples in a row, which blinds the replica."""
        stalled = pending is None or (pending > 0 and seq == self._stall_seq)
        self._stall_strikes = self._stall_strikes + 1 if stalled else 0
        self._stall_seq = seq
        if self._stall_strikes < 2:
            return False
        self.blinded(now, leading=leading)
        self.awaiting = True
        return True
