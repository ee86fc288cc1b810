"""Dependencies (``[[depends]]``): a missing parent keeps its dependents quiet.

A subject matching a rule's ``subjects`` depends on its ``on`` (one exact subject,
the parent; never itself).  The rules, decided by :func:`decide` from the views
(record with the newest beat folded in) and ``now`` alone:

- **suppressed**: a dependent that is down (late, or alerting) while a parent is
  late gets ``Quiet(SUPPRESSED, until=None, ref=parent)``: no alert, no repeats
  (an alert it raised before keeps its resolve);
- **held**: a dependent due to alert while a parent has not been heard since the
  dependent's first missed beat (its last beat + its interval) and is not late yet
  gets ``Quiet(SUPPRESSED, until=<the parent's alert deadline>)``: when a rack stops
  at once and the dependent's window is the shorter, the parent is not late yet.
  A parent beat wakes the held dependents (they alert then); a parent that goes
  late keeps them suppressed;
- **back**: ``Hush.ended`` is the parent's latest return: ``back_at`` in its record
  (set by the engine when its alert resolves, so a new leader agrees) or the return
  this replica saw in the beats (a parent that was late but never alerted).  A
  dependent still missing alerts a full window after it.

:class:`Dependencies` is the :class:`~heartbeat.quiet.HushSource` that reads the
views from :class:`~heartbeat.subjects.Subjects`, and counts the missing dependents
a parent's alert and repeats name.  A parent the monitor has never seen keeps
nothing quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from heartbeat.durations import SECOND
from heartbeat.engine import Beat, Record, alert_deadline, is_late
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind
from heartbeat.routing import matches
from heartbeat.subjects import Subjects

NAMED = 5  # dependents a parent's notification names; the rest are counted
_CACHE_MAX = 1 << 20


@dataclass(frozen=True)
class Dependency:
    """One ``[[depends]]`` rule: subjects matching ``subjects`` depend on ``on``."""

    subjects: tuple[str, ...]
    on: str


@dataclass(frozen=True, slots=True)
class Parent:
    """What :func:`decide` needs of one parent: its view, its alert deadline, the
    return this replica saw in its beats (0.0: none) and, if known, whether it is
    down at the time asked (None: decide works it out)."""

    subject: str
    view: Record
    deadline: float
    returned: float = 0.0
    down: bool | None = None


def parents_of(rules: Sequence[Dependency], subject: str) -> tuple[str, ...]:
    """The parents of ``subject``, in rule order, itself left out."""
    out: dict[str, None] = {}
    for r in rules:
        if r.on != subject and any(matches(p, subject) for p in r.subjects):
            out[r.on] = None
    return tuple(out)


def find_cycle(rules: Sequence[Dependency]) -> list[str] | None:
    """A cycle of parents (``[a, b, a]``: a depends on b, b on a), or None.

    Only parents are exact subjects, so only they can close a cycle."""
    edges = {p: parents_of(rules, p) for p in dict.fromkeys(r.on for r in rules)}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return [*path[path.index(node) :], node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for nxt in edges.get(node, ()):
            if (found := visit(nxt, [*path, node])) is not None:
                return found
        state[node] = 2
        return None

    for node in edges:
        if (found := visit(node, [])) is not None:
            return found
    return None


def is_down(view: Record, now: float) -> bool:
    """Missing its heartbeat: late, or with an alert active that no beat has ended."""
    if view.alert_active and view.last_seen <= (view.alert_last_seen or 0.0):
        return True
    return is_late(view, now)


def decide(view: Record, parents: Iterable[Parent], now: float) -> Hush:
    """The hush of a dependent (``view``) given its known parents, at ``now``."""
    parents = tuple(parents)
    if not parents:
        return LOUD
    ended = 0.0
    for p in parents:
        ended = max(ended, p.returned, p.view.back_at or 0.0)
    if not is_down(view, now):
        return Hush(None, ended)
    for p in parents:
        if p.down if p.down is not None else is_down(p.view, now):
            return Hush(Quiet(QuietKind.SUPPRESSED, None, p.subject), ended)
    if view.alert_active:
        return Hush(None, ended)  # alerted already (parent up): its repeats go out
    first_missed = view.last_seen + view.interval_ns / SECOND
    held = [p for p in parents if p.view.last_seen <= first_missed]
    if held:
        p = min(held, key=lambda p: p.deadline)
        return Hush(Quiet(QuietKind.SUPPRESSED, p.deadline, p.subject), ended)
    return Hush(None, ended)


def returned_at(prev: Beat | None, beat: Beat, rec: Record | None) -> float:
    """When a parent's ``beat`` ends a silence longer than its window (0.0: it does
    not): after its previous beat, or after the beat its alert was raised on."""
    window_s = beat.window_ns / SECOND
    last = prev.last_seen if prev is not None else None
    if rec is not None and rec.alert_active and rec.alert_last_seen is not None:
        last = rec.alert_last_seen if last is None else min(last, rec.alert_last_seen)
    if last is not None and window_s > 0 and beat.last_seen - last > window_s:
        return beat.last_seen
    return 0.0


class Dependencies:
    """The dependency rules as a hush source over the replica's :class:`Subjects`.

    ``quieted`` holds, per parent, the dependents it keeps quiet (suppressed or
    held): a beat of that parent, or its retirement, wakes them
    (:meth:`on_parent_beat`, hooked into :class:`Subjects` for parents only).
    """

    def __init__(self, subjects: Subjects, rules: Sequence[Dependency]) -> None:
        self.subjects = subjects
        self.rules = tuple(rules)
        self.parents = frozenset(r.on for r in self.rules)
        self.quieted: dict[str, set[str]] = {}
        self.returned: dict[str, float] = {}
        self._parents: dict[str, tuple[str, ...]] = {}
        self._members: dict[str, tuple[str, ...]] = {}
        self._members_key = (-1, -1)
        # Parents as of one ``now``: status and metrics ask for every subject at once.
        self._parents_at: dict[str, Parent | None] = {}
        self._parents_now = -1.0

    def attach(self) -> None:
        """Watch the parents' beats (the only per-beat cost: one set lookup)."""
        self.subjects.watched = self.parents
        self.subjects.on_watched = self.on_parent_beat

    def parents_of(self, subject: str) -> tuple[str, ...]:
        got = self._parents.get(subject)
        if got is None:
            if len(self._parents) >= _CACHE_MAX:
                self._parents.clear()
            got = self._parents[subject] = parents_of(self.rules, subject)
        return got

    def _parent_at(self, subject: str, now: float) -> Parent | None:
        if now != self._parents_now:
            self._parents_at.clear()
            self._parents_now = now
        if subject in self._parents_at:
            return self._parents_at[subject]
        got = self._parents_at[subject] = self._parent(subject, now)
        return got

    def _parent(self, subject: str, now: float) -> Parent | None:
        track = self.subjects.get(subject)
        if track is None or (track.record is None and track.beat is None):
            return None
        view = track.view()
        if view.interval_ns <= 0:
            return None
        engine = self.subjects.engine_for(subject)
        deadline = alert_deadline(view, engine, self.subjects.sight_since)
        return Parent(subject, view, deadline, self.returned.get(subject, 0.0), is_down(view, now))

    @property
    def idle(self) -> bool:
        return not self.rules

    def hush(self, subject: str, now: float) -> Hush:
        names = self.parents_of(subject)
        if not names:
            return LOUD
        track = self.subjects.get(subject)
        if track is None:
            return LOUD
        parents = [p for n in names if (p := self._parent_at(n, now)) is not None]
        out = decide(track.view(), parents, now)
        if (q := out.quiet) is not None:
            woken = self.quieted.get(q.ref)
            if woken is None:
                woken = self.quieted[q.ref] = set()
            woken.add(subject)
        return out

    def on_parent_beat(self, parent: str, prev: Beat | None, beat: Beat | None) -> None:
        """A parent beat: note a return, and wake the dependents it kept quiet (also
        when ``beat`` is None: the parent was retired, and keeps nothing quiet now)."""
        if beat is None:
            self.returned.pop(parent, None)
        else:
            track = self.subjects.get(parent)
            back = returned_at(prev, beat, track.record if track is not None else None)
            if back > self.returned.get(parent, 0.0):
                self.returned[parent] = back
        self._parents_at.pop(parent, None)  # decided as of an older beat
        woken = self.quieted.pop(parent, None)
        if woken:
            for s in woken:
                self.subjects.later(s)

    def members(self, parent: str) -> tuple[str, ...]:
        """The subjects that depend on ``parent``, sorted (recomputed when the set of
        tracked subjects changed)."""
        key = (len(self.subjects), self.subjects.retired)
        if key != self._members_key:
            self._members.clear()
            self._members_key = key
        got = self._members.get(parent)
        if got is None:
            got = self._members[parent] = tuple(
                sorted(t.subject for t in self.subjects if parent in self.parents_of(t.subject))
            )
        return got

    def dependents_for(self, subject: str, now: float) -> tuple[int, tuple[str, ...]] | None:
        """For a parent that is down: how many of its dependents are down too, and
        the first :data:`NAMED` of them (None: not a parent, not down, or none)."""
        if subject not in self.parents:
            return None
        track = self.subjects.get(subject)
        if track is None or not is_down(track.view(), now):
            return None
        down = []
        for s in self.members(subject):
            t = self.subjects.get(s)
            if t is not None and is_down(t.view(), now):
                down.append(s)
        if not down:
            return None
        return len(down), tuple(down[:NAMED])
