"""The judge's proof for an accusation, on a real nats-server: a consumer that is
behind (beats still to be handed over) holds only the alerts its handled beats do not
yet prove, and commits each as soon as they do; none is released unproven."""

from __future__ import annotations

import time

from nats.aio.client import Client as NATS

from heartbeat.durations import SECOND
from heartbeat.engine import Beat, EngineConfig
from heartbeat.judge import Judge
from heartbeat.store import StateStore
from heartbeat.subjects import Subjects
from tests.harness import NatsServer, monitor_config, names

ENGINE = EngineConfig(tolerance_s=1.0, repeat_every_s=0.0)


def beat(at: float) -> Beat:
    return Beat(
        last_seen=at, interval_ns=10 * SECOND, grace_ns=None, host="h", description="",
        generated_at="",
    )  # fmt: skip


async def test_a_behind_consumer_proves_alerts_as_its_handled_beats_pass_them(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    cfg = monitor_config(unique)
    store = await StateStore.open(nc.jetstream(), cfg.store)
    subjects = Subjects(ENGINE)
    judge = Judge(subjects, ENGINE, "r1", [])
    judge.max_hold_s = 0.0  # nothing is released for time alone while the feed can say
    p = names(unique)["prefix"]
    t0 = time.time() - 100
    early, late = p + "early", p + "late"
    subjects.on_beat(early, beat(t0))  # silent since t0: proven once beats reach t0 + 11
    subjects.on_beat(late, beat(t0 + 50))  # proven once they reach t0 + 61

    async def behind() -> int:
        return 7  # beats the stream still has to hand over

    async def alerting(subject: str) -> bool:
        got = await store.get(subject)
        return got is not None and got[0].alert_active

    now = time.time()
    await judge.judge_due(now, store, behind, handled_to=t0 + 30)
    assert await alerting(early)
    assert not await alerting(late) and judge.held_alerts == 1
    await judge.judge_due(now + 0.1, store, behind, handled_to=t0 + 60)
    assert not await alerting(late) and judge.held_alerts == 2  # not yet: 60 < 61
    await judge.judge_due(now + 0.2, store, behind, handled_to=t0 + 61.5)
    assert await alerting(late)
