"""Judging the subjects that are due: the engine decides, compare-and-set commits.

The leader's half of the tick: each due subject goes through the pure
:func:`~heartbeat.engine.evaluate`; an outcome with a record is committed with
:meth:`~heartbeat.store.StateStore.modify`, which decides again on what the bucket
holds after a lost race.  A write that fails otherwise backs off per subject.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from heartbeat.engine import (
    Beat,
    Dependents,
    EngineConfig,
    Outcome,
    Reason,
    Record,
    evaluate,
    proven_after,
)
from heartbeat.history import Event, committed, hushed_events
from heartbeat.quiet import LOUD, Hush
from heartbeat.ratelog import RateLog
from heartbeat.store import StateConflict, StateStore, StoreError
from heartbeat.subjects import CREATES_PER_S, Held, Subjects, Track, create_allowance

log = logging.getLogger(__name__)

MAX_WRITE_BACKOFF_S = 60.0
Evidence = Callable[[], Awaitable[int | None]]
"""Beats the stream still has to hand the consumer (None: it cannot say)."""
History = Callable[[Iterable[Event]], None]
"""Where committed transitions are recorded (heartbeat.history_writer); never blocks."""
HushFor = Callable[[str, float], Hush]
"""What keeps a subject quiet at a time (heartbeat.quiet); the default: nothing."""
DependentsFor = Callable[[str, float], Dependents | None]
"""A parent's dependents missing too at a time (heartbeat.depends); the default: none."""
# Decisions made from silence: committed only once the consumer has nothing unhandled.
ACCUSATIONS = frozenset({Reason.ALERT, Reason.RUNNING_LONG})


@dataclass(frozen=True)
class Commit:
    """An outcome to commit, with what it was decided on."""

    track: Track
    first: Outcome
    held: Held
    beat: Beat | None
    now: float
    alert_id: str
    proof: float  # the server time the beats handled must reach for an accusation


@dataclass
class Counters:
    evaluations: int = 0
    kv_writes: int = 0
    conflicts: int = 0
    store_errors: int = 0


class Judge:
    def __init__(
        self, subjects: Subjects, engine: EngineConfig, replica_id: str, channels: Sequence[str]
    ) -> None:
        self.subjects = subjects
        self.engine = engine
        self.replica_id = replica_id
        self.channels = list(channels)
        self.poll_s = 1.0
        self.max_writes = 5000  # commits started per tick; the rest wait for the next
        # Deadlines examined per tick (stale heap entries too); the rest stay due for the
        # next tick, 50 ms on: a new leader at 1M subjects found ~1M due at once (early
        # and stale entries), and popping them in one tick held its loop 1.7 s.
        self.max_scan = 100_000
        self.creates_per_s = CREATES_PER_S  # first records of new subjects (a queue)
        self._create_tokens = 0.0
        self._create_at: float | None = None
        self.counters = Counters()
        self.busy: set[str] = set()  # subjects with a write in flight
        self.write_failures: dict[str, int] = {}  # subject -> failed commits in a row
        self.held_alerts = 0  # alerts decided but held: the consumer was behind
        self.holding_since: float | None = None
        self.max_hold_s = 10.0
        self.write_log = RateLog(log, what="state writes")
        self.hush_for: HushFor = _loud
        self.dependents_for: DependentsFor = _no_dependents
        self.history: History | None = None

    async def judge_due(
        self, now: float, store: StateStore, evidence: Evidence, handled_to: float = 0.0
    ) -> None:
        """Evaluate every subject due at ``now`` and wait for the commits.

        A new alert is an accusation: it is committed once ``evidence`` says the
        heartbeat consumer has been handed everything the stream holds, or once the
        beats handled reach past the silence it is accused of (``handled_to``: the
        server time of the last beat handled; the stream hands them over in order).
        A feed that stalls (a NATS node died under it, the consumer is being recreated)
        delivers no beats without any disconnect, and silence seen through it proves
        nothing; a busy one proves its accusations as it catches up, never falsely.
        """
        writes: list[asyncio.Future[None]] = []
        accusations: list[Commit] = []
        for subject in self._due(now):
            if subject in self.busy or len(writes) + len(accusations) >= self.max_writes:
                self.subjects.later(subject)
                continue
            work = self._evaluate(subject, now)
            if work is None:
                continue
            if work.first.reason in ACCUSATIONS:
                accusations.append(work)
            else:
                writes.append(self._start(store, work))
        if accusations:
            pending = await evidence()
            if pending == 0:
                self.holding_since = None
            elif self.holding_since is None:
                self.holding_since = now
            if pending != 0:
                proven = [w for w in accusations if w.proof <= handled_to]
                writes.extend(self._start(store, w) for w in proven)
                accusations = [w for w in accusations if w.proof > handled_to]
            cannot_say = pending is None and now - (self.holding_since or now) >= self.max_hold_s
            if pending == 0 or cannot_say:
                # A feed that cannot say for max_hold_s is the sight checks' to catch
                # (they blind the replica); alerts are not held for ever on its account.
                writes.extend(self._start(store, w) for w in accusations)
            elif accusations:
                self.held_alerts += len(accusations)
                self.write_log.log(
                    "evidence",
                    logging.WARNING,
                    "holding %d alert(s): the heartbeat consumer %s",
                    len(accusations),
                    "cannot say what it has not been handed yet"
                    if pending is None
                    else f"has {pending} beat(s) still to be handed over",
                )
                for w in accusations:
                    self.busy.discard(w.track.subject)
                    self.subjects.later(w.track.subject)
        if writes:
            await asyncio.gather(*writes)

    def _due(self, now: float) -> list[str]:
        """Subjects due now, then (at ``creates_per_s``) new ones still without a record:
        a burst of new subjects is recorded over seconds, not in one tick, since
        nothing about them needs committing before then (their deadlines are set)."""
        tokens = create_allowance(self._create_tokens, self._create_at, now, self.creates_per_s)
        creates = self.subjects.take_unrecorded(int(tokens))
        self._create_tokens, self._create_at = tokens - len(creates), now
        due = self.subjects.take_due(now, self.max_scan)
        return list(dict.fromkeys([*due, *creates])) if creates else due

    def _start(self, store: StateStore, work: Commit) -> asyncio.Future[None]:
        return asyncio.ensure_future(self._commit(store, work))

    def _decide(self, track: Track, rec: Record | None, now: float, alert_id: str) -> Outcome:
        self.counters.evaluations += 1
        return evaluate(
            track.subject,
            rec,
            track.beat,
            now,
            self.subjects.engine_for(track.subject),
            sight_since=self.subjects.sight_since,
            monitor=self.replica_id,
            channels=self.subjects.channels_for(track.subject, self.channels),
            new_alert_id=alert_id,
            hush=self.hush_for(track.subject, now),
            dependents=self.dependents_for(track.subject, now),
        )

    def _evaluate(self, subject: str, now: float) -> Commit | None:
        track = self.subjects.get(subject)
        if track is None:
            return None  # retired since it was queued
        alert_id = uuid.uuid4().hex[:16]
        try:
            out = self._decide(track, track.record, now, alert_id)
        except Exception:
            log.exception("evaluating %s failed; retrying in %.0fs", subject, self.poll_s * 10)
            self.subjects.push(track, now + self.poll_s * 10)
            return None
        self.subjects.push(track, out.due)
        if out.hushed is not None and self.history is not None:
            self.history(hushed_events(track.view(), out.hushed, now, self.replica_id))
        if out.record is None:
            return None
        self.busy.add(subject)
        proof = proven_after(track.view(), out.reason, self.subjects.engine_for(subject))
        return Commit(track, out, track.held, track.beat, now, alert_id, proof)

    async def _commit(self, store: StateStore, work: Commit) -> None:
        """Commit ``work.first``, decided on ``work.held`` and ``work.beat``; after a
        lost race (or news since), decide again on what the bucket holds now, until a
        write wins or nothing is left to write."""
        track, held, beat, now, alert_id = work.track, work.held, work.beat, work.now, work.alert_id
        subject = track.subject
        decided_on = held[0] if held else None
        latest = work.first
        base = decided_on

        def change(rec: Record | None) -> Record | None:
            nonlocal latest, base
            base = rec
            if self.subjects.get(subject) is not track:
                return None  # retired meanwhile
            if rec is not decided_on or track.beat is not beat:
                latest = self._decide(track, rec, now, alert_id)
            return latest.record

        try:
            done = await store.modify(subject, change, held)
        except StateConflict as e:  # lost ten times over: decide again next tick
            self.counters.conflicts += 1
            self.write_log.log("conflict", logging.WARNING, "committing %s: %s", subject, e)
            self.subjects.later(subject)
            return
        except StoreError as e:
            # A write that keeps failing (a server limit, an outage) is retried with
            # backoff per subject, never on every tick.
            self.counters.store_errors += 1
            failures = self.write_failures[subject] = self.write_failures.get(subject, 0) + 1
            delay = min(MAX_WRITE_BACKOFF_S, self.poll_s * 2 ** min(failures, 16))
            self.write_log.log(
                "error",
                logging.WARNING,
                "committing %s failed (%d time(s)), retrying in %.1fs: %s",
                subject,
                failures,
                delay,
                e,
            )
            self.subjects.push(track, now + delay)
            return
        finally:
            self.busy.discard(subject)
        self.write_failures.pop(subject, None)
        self.counters.conflicts += done.conflicts
        self.subjects.hold(subject, done.held)
        if not done.wrote:
            return
        self.counters.kv_writes += 1
        if (n := latest.notification) is not None:
            log.info("%s %s (id %s)", n.event, subject, n.notification_id)
            if self.history is not None and latest.record is not None:
                # Only now: the commit won, so the transition is a fact.
                self.history(committed(base, latest.record, n))


def _loud(subject: str, now: float) -> Hush:
    return LOUD


def _no_dependents(subject: str, now: float) -> Dependents | None:
    return None
