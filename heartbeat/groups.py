"""Alert storms: many notifications for one channel at once become one group.

Per channel, the first ``over`` notifications that become due within ``wait_s``
are sent on their own, at once, so a single alert is never delayed.  Past that,
notifications are held for at most ``wait_s`` and sent as one ``group``
notification (at most ``max_size`` members; a larger burst makes several groups).

A group is committed before it is sent, like any notification: an entry under
``_group.<id>`` in the state bucket names the channel and the members it claims
(subject and notification id each).  From then on the group owes those members'
delivery to that channel: the members' own records are crossed off, a member
still listing the channel (a crash before the cross-off) is crossed off without
sending, and the entry is deleted once the group is delivered.  Whoever leads
delivers the groups it finds in the bucket, with the group's id every time.

:class:`Batcher` only decides (times passed in); :class:`~heartbeat.delivery.Deliveries`
carries it out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from heartbeat.notification import Notification

GROUP_PREFIX = "_group."
MAX_GROUP = 500
MEMBER_BYTES = 1024  # a typical member's JSON, generously; larger groups are split


def group_size(max_payload: int) -> int:
    """Members per group so that its entry fits a message of ``max_payload`` bytes."""
    if max_payload <= 0:
        return MAX_GROUP
    return max(1, min(MAX_GROUP, max_payload // 2 // MEMBER_BYTES))


class GroupEntry(msgspec.Struct, kw_only=True):
    """What the bucket holds under ``_group.<id>``."""

    notification: Notification  # event "group", the members inside
    channel: str
    members: list[tuple[str, str]]  # (subject, member notification_id)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(GroupEntry)


def encode_group(entry: GroupEntry) -> bytes:
    return _encoder.encode(entry)


def decode_group(data: bytes) -> GroupEntry:
    return _decoder.decode(data)


@dataclass
class _Channel:
    sent: deque[float] = field(default_factory=deque)  # when lone sends started
    held: list[tuple[str, Notification]] = field(default_factory=list)
    held_since: float | None = None


class Batcher:
    """Per channel: send alone, or hold for a group; and which groups are ready."""

    def __init__(self, *, over: int, wait_s: float, max_size: int) -> None:
        self.over = over
        self.wait_s = wait_s
        self.max_size = max(1, max_size)
        self._channels: dict[str, _Channel] = {}

    def alone(self, channel: str, now: float) -> bool:
        """Whether a notification due now goes to ``channel`` on its own (counted), or
        is to be held for a group (:meth:`hold`)."""
        c = self._channels.setdefault(channel, _Channel())
        while c.sent and c.sent[0] <= now - self.wait_s:
            c.sent.popleft()
        if c.held or len(c.sent) >= self.over:
            return False
        c.sent.append(now)
        return True

    def hold(self, channel: str, subject: str, notification: Notification, now: float) -> None:
        c = self._channels.setdefault(channel, _Channel())
        if not c.held:
            c.held_since = now
        c.held.append((subject, notification))

    def held(self) -> int:
        return sum(len(c.held) for c in self._channels.values())

    def ready(self, now: float) -> list[tuple[str, list[tuple[str, Notification]]]]:
        """Groups to form now: a channel's held notifications once the oldest has
        waited ``wait_s`` (or a full group's worth), in groups of ``max_size``."""
        out = []
        for name, c in self._channels.items():
            if not c.held or c.held_since is None:
                continue
            if now - c.held_since < self.wait_s and len(c.held) < self.max_size:
                continue
            held, c.held, c.held_since = c.held, [], None
            for i in range(0, len(held), self.max_size):
                out.append((name, held[i : i + self.max_size]))
        return out
