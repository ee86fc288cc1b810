"""Silences and pauses: entries of a KV bucket, and the book every replica keeps of them.

A :class:`Silence` is one key of the silences bucket (``HEARTBEAT_SILENCES``), its
value JSON readable with ``nats kv get``.  A silence has an end and stops applying
by itself once it passes; a pause has none until ``resume`` writes one.  Ending one
early writes ``ends`` (never deletes the key), so every replica, and one started
later, knows *when* it ended: the engine's ``Hush.ended`` floor needs that.  Entries
that ended more than :data:`KEEP_ENDED_S` ago are purged (by the leader and by
``silence ls``); the per-message TTL the store sets is only a backstop.

:class:`SilenceBook` is the in-memory mirror of the bucket and a
:class:`~heartbeat.quiet.HushSource`.  Pure: times are parameters, no I/O.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind, combine
from heartbeat.ratelog import RateLog
from heartbeat.routing import valid_pattern
from heartbeat.status_schema import SilenceStatus
from heartbeat.text import for_log

log = logging.getLogger(__name__)

DEFAULT_BUCKET = "HEARTBEAT_SILENCES"
KEEP_ENDED_S = 7 * 86_400.0  # ended entries kept this long: longer than any window that matters
MAX_PATTERNS = 100
MAX_REASON = 1000
MAX_BY = 200
_CACHE_MAX = 1 << 20
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a KV key; `silence add` makes 12 hex digits

Aware = Annotated[datetime, msgspec.Meta(tz=True)]
Kind = Literal["silence", "pause"]


class Silence(msgspec.Struct, kw_only=True, frozen=True):
    """One silence or pause, as stored (times RFC 3339 with an offset)."""

    id: str
    kind: Kind
    subjects: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_PATTERNS)]
    starts: Aware
    ends: Aware | None  # None: a pause not yet resumed
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON)] = ""
    by: Annotated[str, msgspec.Meta(max_length=MAX_BY)] = ""
    created: Aware

    @property
    def starts_s(self) -> float:
        return self.starts.timestamp()

    @property
    def ends_s(self) -> float | None:
        return None if self.ends is None else self.ends.timestamp()

    def active(self, now: float) -> bool:
        """In force at ``now``."""
        ends = self.ends_s
        return self.starts_s <= now and (ends is None or now < ends)

    def current(self, now: float) -> bool:
        """In force at ``now`` or scheduled to be (not yet ended)."""
        ends = self.ends_s
        return ends is None or now < ends

    def ended_before(self, now: float, keep_s: float = KEEP_ENDED_S) -> bool:
        """Ended more than ``keep_s`` before ``now`` (fit to purge)."""
        ends = self.ends_s
        return ends is not None and ends + keep_s <= now


class InvalidSilence(ValueError):
    """A silence entry that is not one (bad JSON, a bad pattern, no end for a silence)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Silence)


def encode_silence(s: Silence) -> bytes:
    return _encoder.encode(s)


def decode_silence(key: str, data: bytes) -> Silence:
    """The entry stored under ``key``; :class:`InvalidSilence` saying why it is not one."""
    try:
        s = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raise InvalidSilence(str(e)) from e
    why = problem(s)
    if why is None and s.id != key:
        why = f"its id {s.id!r} is not its key"
    if why is not None:
        raise InvalidSilence(why)
    return s


def problem(s: Silence) -> str | None:
    """Why ``s`` is not a usable entry, or None."""
    if not ID_RE.fullmatch(s.id):
        return f"id {s.id[:80]!r} must be 1-64 letters, digits, '_' or '-'"
    for p in s.subjects:
        if (why := valid_pattern(p)) is not None:
            return f"subject pattern {p[:80]!r} {why}"
    if s.kind == "silence" and s.ends is None:
        return "a silence needs an end (only a pause has none)"
    return None


def new_silence(
    id: str,
    kind: Kind,
    subjects: Iterable[str],
    *,
    starts: float,
    ends: float | None,
    reason: str,
    by: str,
    created: float,
) -> Silence:
    """A silence from epoch times; :class:`InvalidSilence` when it is not a usable one."""
    try:
        s = Silence(
            id=id,
            kind=kind,
            subjects=list(dict.fromkeys(subjects)),
            starts=_at(starts),
            ends=None if ends is None else _at(ends),
            reason=reason,
            by=by,
            created=_at(created),
        )
        s = msgspec.convert(msgspec.to_builtins(s), Silence)  # the length limits
    except msgspec.ValidationError as e:
        raise InvalidSilence(str(e)) from e
    if (why := problem(s)) is not None:
        raise InvalidSilence(why)
    return s


def ended_at(s: Silence, now: float) -> Silence:
    """``s`` ended at ``now`` (``silence rm``, ``resume``); one that already ended keeps
    its end, one not yet started ends before it ever applied."""
    ends = s.ends_s
    if ends is not None and ends <= now:
        return s
    return msgspec.structs.replace(s, ends=_at(now))


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def status_of(s: Silence) -> SilenceStatus:
    return SilenceStatus(
        id=s.id,
        kind=s.kind,
        subjects=list(s.subjects),
        starts=s.starts,
        ends=s.ends,
        reason=s.reason,
        by=s.by,
    )


class _Node:
    __slots__ = ("children", "here", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.here: list[str] = []  # ids of patterns that end at this token
        self.rest: list[str] = []  # ids of patterns with '>' after this token


class PatternIndex:
    """Which of many NATS patterns match a subject, in one walk of a token trie (as the
    server's sublist does): the cost follows the subject's depth and the wildcards on
    its path, not the number of patterns."""

    def __init__(self, patterns: Iterable[tuple[str, str]] = ()) -> None:
        self._root = _Node()
        self.size = 0
        for pattern, ref in patterns:
            self.add(pattern, ref)

    def add(self, pattern: str, ref: str) -> None:
        node = self._root
        tokens = pattern.split(".")
        for i, tok in enumerate(tokens):
            if tok == ">" and i == len(tokens) - 1:
                node.rest.append(ref)
                self.size += 1
                return
            node = node.children.setdefault(tok, _Node())
        node.here.append(ref)
        self.size += 1

    def match(self, subject: str) -> list[str]:
        """The refs of every pattern that matches ``subject`` (each once)."""
        tokens = subject.split(".")
        n = len(tokens)
        out: dict[str, None] = {}
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if node.rest and i < n:
                out.update(dict.fromkeys(node.rest))
            if i == n:
                out.update(dict.fromkeys(node.here))
                continue
            if (child := node.children.get(tokens[i])) is not None:
                stack.append((child, i + 1))
            if tokens[i] != "*" and (star := node.children.get("*")) is not None:
                stack.append((star, i + 1))
        return list(out)


@dataclass(frozen=True, slots=True)
class _Span:
    """A silence as the book matches it: floats, its quiet kind, its patterns."""

    id: str
    kind: QuietKind
    starts: float
    ends: float | None
    patterns: tuple[str, ...]


class SilenceBook:
    """Every silence and pause a replica knows, by id; a HushSource.

    Which spans match a subject is cached per subject (the status page asks for every
    subject, the judge for every evaluation) and forgotten on any change.  Patterns
    of entries that changed (old and new) collect in ``changed`` until the monitor
    wakes the subjects they match (:meth:`take_changed`).
    """

    def __init__(
        self, *, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.entries: dict[str, tuple[Silence, int]] = {}
        self._spans: dict[str, _Span] = {}
        self._index: PatternIndex | None = None  # over every span's patterns; built when asked
        self._cache: dict[str, tuple[_Span, ...]] = {}
        self.changed: set[str] = set()
        self.ignored = 0  # entries that are not silences (written by hand), ignored
        self._bad = RateLog(log, every_s=every_s, clock=clock, what="silence entries")

    def __len__(self) -> int:
        return len(self.entries)

    # ----- inputs --------------------------------------------------------------------

    def observe(self, key: str, data: bytes | None, revision: int) -> None:
        """The bucket's newest message on ``key`` (``data`` None: deleted or purged)."""
        if data is None:
            self.put(key, None, revision)
            return
        try:
            s = decode_silence(key, data)
        except InvalidSilence as e:
            self.ignored += 1
            self._bad.log(
                "invalid",
                logging.WARNING,
                "ignoring silence entry %s: %s",
                for_log(key),
                for_log(str(e)),
            )
            self.put(key, None, revision)  # what it replaced no longer holds either
            return
        self.put(key, s, revision)

    def put(self, key: str, s: Silence | None, revision: int) -> None:
        """Hold ``s`` under ``key`` (None: forget it); older revisions are ignored."""
        old = self.entries.get(key)
        if old is not None and old[1] > revision:
            return
        if old is not None:
            self.changed.update(old[0].subjects)
        if s is None:
            self.entries.pop(key, None)
            self._spans.pop(key, None)
        else:
            self.entries[key] = (s, revision)
            self._spans[key] = _Span(
                s.id,
                QuietKind.PAUSED if s.kind == "pause" else QuietKind.SILENCED,
                s.starts_s,
                s.ends_s,
                tuple(s.subjects),
            )
            self.changed.update(s.subjects)
        if old is not None or s is not None:
            self._cache.clear()
            self._index = None

    def take_changed(self) -> Callable[[str], bool] | None:
        """A matcher for subjects whose quiet may have changed since the last call."""
        if not self.changed:
            return None
        index = PatternIndex((p, p) for p in self.changed)
        self.changed.clear()
        return lambda subject: bool(index.match(subject))

    # ----- the HushSource --------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._spans

    def hush(self, subject: str, now: float) -> Hush:
        if not self._spans:
            return LOUD
        spans = self._cache.get(subject)
        if spans is None:
            index = self._index
            if index is None:
                spans_ = self._spans.items()
                index = self._index = PatternIndex((p, k) for k, s in spans_ for p in s.patterns)
            spans = tuple(self._spans[ref] for ref in index.match(subject))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[subject] = spans
        if not spans:
            return LOUD
        return combine(_hush(s, now) for s in spans)

    # ----- queries ---------------------------------------------------------------------

    def current(self, now: float) -> list[Silence]:
        """Silences and pauses in force or scheduled at ``now``, by start then id."""
        out = [s for s, _ in self.entries.values() if s.current(now)]
        return sorted(out, key=lambda s: (s.starts, s.id))

    def purgeable(self, now: float, keep_s: float = KEEP_ENDED_S) -> list[tuple[str, int]]:
        """(id, revision) of entries that ended more than ``keep_s`` before ``now``."""
        return [(k, rev) for k, (s, rev) in self.entries.items() if s.ended_before(now, keep_s)]


def _hush(s: _Span, now: float) -> Hush:
    if s.starts <= now and (s.ends is None or now < s.ends):
        return Hush(Quiet(s.kind, s.ends, s.id))
    if s.ends is not None and s.starts < s.ends <= now:
        return Hush(None, s.ends)  # it applied once, and ended then
    return LOUD  # scheduled, or ended before it began
