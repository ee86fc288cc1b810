"""Which channels hear about a subject: routes by NATS subject pattern.

Routes are tried in order; the first whose patterns match a subject decides, unless
it says ``continue_``, in which case later matching routes add their channels too.
A subject that no route matches goes to no channel (it is counted and shown in
status, never dropped silently).  With no routes at all, every subject goes to
every channel (the behaviour without a config file).  Pure; results are cached per
subject, since every evaluation of a subject asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

_CACHE_MAX = 1 << 20


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">" and i == len(p) - 1:
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def valid_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable subject pattern, or None."""
    if not pattern or pattern != pattern.strip():
        return "must be a non-empty subject pattern without spaces"
    tokens = pattern.split(".")
    if any(not t for t in tokens):
        return "has an empty token"
    if any(">" in t and (t != ">" or i != len(tokens) - 1) for i, t in enumerate(tokens)):
        return "may use '>' only as its whole last token"
    if any("*" in t and t != "*" for t in tokens):
        return "may use '*' only as a whole token"
    if any(c.isspace() for c in pattern):
        return "must not contain whitespace"
    return None


@dataclass(frozen=True)
class Route:
    subjects: tuple[str, ...]
    channels: tuple[str, ...]
    repeat_every_s: float | None = None  # None: the monitor's --repeat-every
    continue_: bool = False


@dataclass(frozen=True)
class Routed:
    """Where a subject's notifications go, and how often alerts repeat (None: the
    default)."""

    channels: tuple[str, ...]
    repeat_every_s: float | None = None

    @property
    def unrouted(self) -> bool:
        return not self.channels


@dataclass
class Router:
    """``routes`` over the configured ``channels`` (names, in configuration order)."""

    channels: Sequence[str]
    routes: Sequence[Route] = ()
    _cache: dict[str, Routed] = field(default_factory=dict, repr=False)
    # Answers by value: subjects routed alike share one (an object, its dict and its
    # tuple were ~250 bytes a subject); without routes one answer serves every subject.
    _shared: dict[Routed, Routed] = field(default_factory=dict, repr=False)
    _every: Routed | None = field(default=None, repr=False)

    def route(self, subject: str) -> Routed:
        if not self.routes:
            every = self._every
            if every is None:
                every = self._every = Routed(tuple(self.channels))
            return every
        got = self._cache.get(subject)
        if got is None:
            got = self._route(subject)
            got = self._shared.setdefault(got, got)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
                self._shared.clear()
            self._cache[subject] = got
        return got

    def _route(self, subject: str) -> Routed:
        if not self.routes:
            return Routed(tuple(self.channels))
        chosen: dict[str, None] = {}
        repeat: float | None = None
        for r in self.routes:
            if not any(matches(p, subject) for p in r.subjects):
                continue
            chosen.update(dict.fromkeys(r.channels))
            if repeat is None:
                repeat = r.repeat_every_s
            if not r.continue_:
                break
        return Routed(tuple(chosen), repeat)
