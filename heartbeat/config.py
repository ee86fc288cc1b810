"""The config file: named channels and the routes that send subjects to them.

Pure: :func:`parse_config` takes the parsed TOML (a dict) and a ``read_file``
callable for ``*_file`` secrets and returns a frozen :class:`Config`, or raises one
:class:`ConfigError` naming the file, the key and what is wrong.  Channels that
flags define (``pushover``, ``webhook:<hash>``, ``log``) come in as
:class:`ChannelSpec` too and are merged; a name defined twice is an error.
:func:`build_notifiers` turns specs into notifiers, in one place: the
:data:`CHANNEL_TYPES` table (type -> keys it takes -> constructor).

Format (every key)::

    [channels.NAME]            # NAME: a letter, then letters, digits, "-" or "_"
    type = "slack"             # see CHANNEL_TYPES for each type's keys
    url_file = "/run/secrets/slack"   # any secret key also as KEY_file

    [[routes]]                 # optional; none: every subject to every channel
    subjects = ["heartbeat.db.>"]     # NATS patterns
    channels = ["NAME"]
    repeat_every = "30m"       # optional Go duration, > 0
    continue = false           # optional: later matching routes add channels

    [[maintenance]]            # optional; quiet windows (heartbeat.maintenance)
    subjects = ["heartbeat.batch.>"]  # NATS patterns
    schedule = "0 2 * * SUN"   # cron: 5 fields, or 6 with seconds first
    duration = "2h"            # Go duration, > 0: how long each occurrence lasts
    timezone = "Europe/Berlin" # optional IANA zone of the schedule, default UTC
    name = "nightly"           # optional, default maintenance[N]; shown in status

    [[depends]]                # optional (heartbeat.depends)
    subjects = ["heartbeat.dc1.>"]    # NATS patterns: the dependents
    on = "heartbeat.dc1.uplink"       # one exact subject: their parent

Top-level tables other than ``channels``, ``routes``, ``maintenance`` and ``depends``
are rejected.
"""

from __future__ import annotations

import os.path
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from heartbeat.depends import Dependency, find_cycle
from heartbeat.durations import parse_duration
from heartbeat.errors import HeartbeatError, InvalidDuration
from heartbeat.maintenance import Window, check_schedule, check_zone
from heartbeat.notify import (
    AppriseNotifier,
    DiscordNotifier,
    EmailNotifier,
    LogNotifier,
    NtfyNotifier,
    OpsgenieNotifier,
    PagerDutyNotifier,
    PushoverNotifier,
    SlackNotifier,
    TeamsNotifier,
    TelegramNotifier,
    WebhookNotifier,
)
from heartbeat.notify.base import Notifier
from heartbeat.notify.pushover import PUSHOVER_URL
from heartbeat.routing import Route, valid_pattern
from heartbeat.schema import is_valid_subject

FLAGS = "flags"  # the source of channels defined by flags and environment variables
RESERVED_TABLES: frozenset[str] = frozenset()  # tables of later issues: accepted, ignored
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

ReadFile = Callable[[str], str]


class ConfigError(HeartbeatError, ValueError):
    """The config is unusable: ``path`` (the file, or ``flags``), the dotted ``key``
    (``channels.oncall.routing_key_file``, ``routes[2].channels``; routes count from
    1) and ``what`` is wrong."""

    def __init__(self, path: str, key: str, what: str) -> None:
        self.path, self.key, self.what = path, key, what
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {what}")


# --- channel types ---------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key a channel type takes.  ``kind``: ``str``, ``str|int`` (an integer becomes
    its string), ``port``, ``positive`` (a number > 0) or ``list`` (of non-empty strings).
    ``secret``: also accepted as ``<key>_file`` (a list from a file: one item a line,
    blank lines and ``#`` lines skipped)."""

    kind: str = "str"
    required: bool = False
    secret: bool = False
    choices: tuple[str, ...] = ()
    url: bool = False  # must be http:// or https://


Build = Callable[[aiohttp.ClientSession, str, dict[str, Any]], Notifier]


@dataclass(frozen=True)
class ChannelType:
    keys: Mapping[str, Key]
    build: Build


def _http(
    cls: Callable[..., Notifier],
) -> Build:
    return lambda session, name, o: cls(session, name=name, **o)


CHANNEL_TYPES: Mapping[str, ChannelType] = {
    "slack": ChannelType({"url": Key(required=True, secret=True, url=True)}, _http(SlackNotifier)),
    "teams": ChannelType({"url": Key(required=True, secret=True, url=True)}, _http(TeamsNotifier)),
    "discord": ChannelType(
        {"url": Key(required=True, secret=True, url=True)}, _http(DiscordNotifier)
    ),
    "telegram": ChannelType(
        {
            "token": Key(required=True, secret=True),
            "chat_id": Key(kind="str|int", required=True),
            "api_url": Key(url=True),
        },
        _http(TelegramNotifier),
    ),
    "ntfy": ChannelType(
        {
            "url": Key(required=True, secret=True, url=True),
            "token": Key(secret=True),
            "alert_priority": Key(
                choices=("min", "low", "default", "high", "urgent", "1", "2", "3", "4", "5")
            ),
        },
        _http(NtfyNotifier),
    ),
    "email": ChannelType(
        {
            "host": Key(required=True),
            "port": Key(kind="port"),
            "security": Key(choices=("starttls", "tls", "plain")),
            "sender": Key(required=True),
            "recipients": Key(kind="list", required=True),
            "username": Key(),
            "password": Key(secret=True),
            "timeout_s": Key(kind="positive"),
        },
        lambda session, name, o: EmailNotifier(name=name, **o),
    ),
    "pagerduty": ChannelType(
        {
            "routing_key": Key(required=True, secret=True),
            "severity": Key(choices=("critical", "error", "warning", "info")),
            "api_url": Key(url=True),
        },
        _http(PagerDutyNotifier),
    ),
    "opsgenie": ChannelType(
        {
            "api_key": Key(required=True, secret=True),
            "priority": Key(choices=("P1", "P2", "P3", "P4", "P5")),
            "api_url": Key(url=True),
        },
        _http(OpsgenieNotifier),
    ),
    "apprise": ChannelType(
        {"urls": Key(kind="list", required=True, secret=True)},
        lambda session, name, o: AppriseNotifier(name=name, **o),
    ),
    "pushover": ChannelType(
        {
            "user": Key(required=True, secret=True),
            "token": Key(required=True, secret=True),
            "url": Key(url=True),
        },
        lambda session, name, o: PushoverNotifier(
            session, user=o["user"], token=o["token"], url=o.get("url", PUSHOVER_URL), name=name
        ),
    ),
    "webhook": ChannelType(
        {"url": Key(required=True, secret=True, url=True), "secret": Key(secret=True)},
        lambda session, name, o: WebhookNotifier(
            session, o["url"], secret=o.get("secret", ""), name=name
        ),
    ),
    "log": ChannelType({}, lambda session, name, o: LogNotifier(name=name)),
}
TYPE_ALIASES = {"smtp": "email"}


@dataclass(frozen=True)
class ChannelSpec:
    """A channel to build: ``name``, ``type`` (a key of :data:`CHANNEL_TYPES`), its
    ``options`` with secrets already read, and where it was defined (``source``: the
    config file or :data:`FLAGS`).  ``repr`` never shows the options (secrets)."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    source: str = FLAGS

    @property
    def key(self) -> str:
        return f"channels.{self.name}"


@dataclass(frozen=True)
class Config:
    """Channels in definition order (file first, then flags) and routes (none: every
    subject to every channel)."""

    path: str
    channels: tuple[ChannelSpec, ...] = ()
    routes: tuple[Route, ...] = ()
    depends: tuple[Dependency, ...] = ()
    maintenance: tuple[Window, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    def channel(self, name: str) -> ChannelSpec | None:
        return next((c for c in self.channels if c.name == name), None)


# --- parsing ---------------------------------------------------------------------------


def load_config(
    text: str,
    *,
    path: str,
    read_file: ReadFile,
    extra: Sequence[ChannelSpec] = (),
) -> Config:
    """:func:`parse_config` of TOML ``text`` (the content of ``path``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"not valid TOML: {e}") from e
    return parse_config(data, path=path, read_file=read_file, extra=extra)


def parse_config(
    data: Mapping[str, Any],
    *,
    path: str,
    read_file: ReadFile,
    extra: Sequence[ChannelSpec] = (),
) -> Config:
    """Validate the parsed config ``data`` of ``path`` merged with the ``extra``
    channels (from flags).  Relative ``*_file`` paths are relative to the config file's
    directory; ``read_file`` reads one (raising ``OSError``)."""
    for top in data:
        if (
            top not in ("channels", "routes", "maintenance", "depends")
            and top not in RESERVED_TABLES
        ):
            raise ConfigError(
                path,
                top,
                "unknown top-level key (expected [channels.NAME], [[routes]], [[maintenance]] "
                "or [[depends]])",
            )
    channels = _table(data.get("channels", {}), path, "channels")
    specs: list[ChannelSpec] = []
    for name, body in channels.items():
        specs.append(_channel(path, name, body, read_file))
    for spec in extra:
        other = next((s for s in specs if s.name == spec.name), None)
        if other is not None:
            raise ConfigError(
                path,
                other.key,
                f"channel {spec.name!r} is also defined by {spec.source}; give it another name",
            )
        specs.append(spec)
    known = {s.name for s in specs}
    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError(path, "routes", "must be an array of tables ([[routes]])")
    routes = tuple(_route(path, i, r, known) for i, r in enumerate(raw_routes, 1))
    return Config(
        path=path,
        channels=tuple(specs),
        routes=routes,
        maintenance=_maintenance(path, data.get("maintenance", [])),
        depends=_depends(path, data.get("depends", [])),
    )


def merge_flags(extra: Sequence[ChannelSpec]) -> Config:
    """The config of a monitor without a config file: the flags' channels only."""
    return parse_config({}, path=FLAGS, read_file=_no_files, extra=extra)


def _no_files(path: str) -> str:
    raise OSError(2, "no config file to resolve it against")


def _table(value: Any, path: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, key, f"must be a table, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _channel(path: str, name: str, body: Any, read_file: ReadFile) -> ChannelSpec:
    key = f"channels.{name}"
    if not NAME_RE.fullmatch(name):
        raise ConfigError(
            path,
            key,
            "a channel name must start with a letter and hold only letters, digits, "
            "'-' and '_' (at most 64)",
        )
    body = _table(body, path, key)
    kind = body.get("type")
    if kind is None:
        raise ConfigError(path, f"{key}.type", f"missing (one of {', '.join(CHANNEL_TYPES)})")
    if not isinstance(kind, str):
        raise ConfigError(path, f"{key}.type", f"must be a string, not {_kind(kind)}")
    kind = TYPE_ALIASES.get(kind, kind)
    ctype = CHANNEL_TYPES.get(kind)
    if ctype is None:
        raise ConfigError(
            path, f"{key}.type", f"unknown type {kind!r} (one of {', '.join(CHANNEL_TYPES)})"
        )
    allowed = set(ctype.keys) | {f"{k}_file" for k, spec in ctype.keys.items() if spec.secret}
    for k in body:
        if k != "type" and k not in allowed:
            what = f"unknown key for type {kind!r}"
            what += f" (takes {', '.join(sorted(allowed))})" if allowed else " (takes none)"
            raise ConfigError(path, f"{key}.{k}", what)
    options: dict[str, Any] = {}
    for k, spec in ctype.keys.items():
        value = _value(path, key, k, spec, body, read_file)
        if value is not None:
            options[k] = value
    return ChannelSpec(name=name, type=kind, options=options, source=path)


def _value(
    path: str, key: str, k: str, spec: Key, body: Mapping[str, Any], read_file: ReadFile
) -> Any:
    inline, from_file = k in body, f"{k}_file" in body
    if inline and from_file:
        raise ConfigError(path, f"{key}.{k}_file", f"set either {k} or {k}_file, not both")
    if from_file:
        name = body[f"{k}_file"]
        where = f"{key}.{k}_file"
        if not isinstance(name, str) or not name:
            raise ConfigError(path, where, f"must be a file path, not {_kind(name)}")
        full = (
            name
            if os.path.isabs(name) or path == FLAGS
            else os.path.join(os.path.dirname(path), name)
        )
        try:
            text = read_file(full)
        except OSError as e:
            raise ConfigError(path, where, f"cannot read {name}: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(path, where, f"cannot read {name}: not UTF-8 text") from e
        if spec.kind == "list":
            value: Any = [
                line.strip()
                for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")
            ]
        else:
            value = text.strip()
        if not value:
            raise ConfigError(path, where, f"{name} is empty")
        return value
    if not inline:
        if spec.required:
            also = f" (or {k}_file)" if spec.secret else ""
            raise ConfigError(path, f"{key}.{k}", f"missing: this channel needs {k}{also}")
        return None
    return _check(path, f"{key}.{k}", spec, body[k])


def _check(path: str, where: str, spec: Key, value: Any) -> Any:
    return _CHECKS[spec.kind](path, where, spec, value)


def _check_str(path: str, where: str, spec: Key, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, where, f"must be a string, not {_kind(value)}")
    if not value.strip():
        raise ConfigError(path, where, "must not be empty")
    if spec.choices and value not in spec.choices:
        raise ConfigError(path, where, f"{value!r} is not one of {', '.join(spec.choices)}")
    if spec.url and not _http_url(value):
        raise ConfigError(path, where, "must be an http:// or https:// URL with a host")
    return value


def _http_url(value: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises for a port that is not 0-65535)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and value.isprintable()


def _check_str_int(path: str, where: str, spec: Key, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(path, where, f"must be a string or an integer, not {_kind(value)}")
    return _check_str(path, where, spec, str(value))


def _check_port(path: str, where: str, spec: Key, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, where, f"must be an integer, not {_kind(value)}")
    if not 0 < value < 65536:
        raise ConfigError(path, where, f"{value} is not a port (1-65535)")
    return value


def _check_positive(path: str, where: str, spec: Key, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, where, f"must be a number, not {_kind(value)}")
    if not value > 0:
        raise ConfigError(path, where, f"must be greater than 0, got {value}")
    return float(value)


def _check_list(path: str, where: str, spec: Key, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(path, where, "must be a non-empty array of strings")
    for i, item in enumerate(value, 1):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(path, f"{where}[{i}]", "must be a non-empty string")
    return list(value)


_CHECKS: Mapping[str, Callable[[str, str, Key, Any], Any]] = {
    "str": _check_str,
    "str|int": _check_str_int,
    "port": _check_port,
    "positive": _check_positive,
    "list": _check_list,
}


def _strings(path: str, where: str, value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(path, where, f"must be a non-empty array of {what}")
    for i, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise ConfigError(path, f"{where}[{i}]", f"must be a string, not {_kind(item)}")
    return tuple(value)


def _route(path: str, i: int, body: Any, known: set[str]) -> Route:
    key = f"routes[{i}]"
    body = _table(body, path, key)
    for k in body:
        if k not in ("subjects", "channels", "repeat_every", "continue"):
            raise ConfigError(
                path, f"{key}.{k}", "unknown key (takes subjects, channels, repeat_every, continue)"
            )
    for k in ("subjects", "channels"):
        if k not in body:
            raise ConfigError(path, f"{key}.{k}", "missing")
    subjects = _strings(path, f"{key}.subjects", body["subjects"], "subject patterns")
    for j, pattern in enumerate(subjects, 1):
        why = valid_pattern(pattern)
        if why is not None:
            raise ConfigError(path, f"{key}.subjects[{j}]", f"{pattern!r} {why}")
    channels = _strings(path, f"{key}.channels", body["channels"], "channel names")
    for j, name in enumerate(channels, 1):
        if name not in known:
            have = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                path, f"{key}.channels[{j}]", f"no channel named {name!r} (defined: {have})"
            )
    repeat = (
        _repeat(path, f"{key}.repeat_every", body["repeat_every"])
        if "repeat_every" in body
        else None
    )
    cont = body.get("continue", False)
    if not isinstance(cont, bool):
        raise ConfigError(path, f"{key}.continue", f"must be true or false, not {_kind(cont)}")
    return Route(subjects=subjects, channels=channels, repeat_every_s=repeat, continue_=cont)


def _depends(path: str, raw: Any) -> tuple[Dependency, ...]:
    """``[[depends]]`` tables (counted from 1); a cycle among parents is an error."""
    if not isinstance(raw, list):
        raise ConfigError(path, "depends", "must be an array of tables ([[depends]])")
    out: list[Dependency] = []
    for i, body in enumerate(raw, 1):
        key = f"depends[{i}]"
        body = _table(body, path, key)
        for k in body:
            if k not in ("subjects", "on"):
                raise ConfigError(path, f"{key}.{k}", "unknown key (takes subjects, on)")
        for k in ("subjects", "on"):
            if k not in body:
                raise ConfigError(path, f"{key}.{k}", "missing")
        subjects = _strings(path, f"{key}.subjects", body["subjects"], "subject patterns")
        for j, pattern in enumerate(subjects, 1):
            why = valid_pattern(pattern)
            if why is not None:
                raise ConfigError(path, f"{key}.subjects[{j}]", f"{pattern!r} {why}")
        on = body["on"]
        if not isinstance(on, str):
            raise ConfigError(path, f"{key}.on", f"must be a subject string, not {_kind(on)}")
        if not is_valid_subject(on):
            raise ConfigError(
                path,
                f"{key}.on",
                f"{on!r} must be one exact subject (no wildcards, no empty tokens)",
            )
        out.append(Dependency(subjects=subjects, on=on))
    cycle = find_cycle(out)
    if cycle is not None:
        raise ConfigError(
            path,
            "depends",
            f"dependency cycle: {' -> '.join(cycle)} (each depends on the next); narrow "
            "the subjects patterns so that no parent depends on its own dependent",
        )
    return tuple(out)


MAINTENANCE_KEYS = ("subjects", "schedule", "duration", "timezone", "name")


def _maintenance(path: str, raw: Any) -> tuple[Window, ...]:
    if not isinstance(raw, list):
        raise ConfigError(path, "maintenance", "must be an array of tables ([[maintenance]])")
    windows: list[Window] = []
    for i, body in enumerate(raw, 1):
        w = _window(path, i, body)
        if any(o.name == w.name for o in windows):
            raise ConfigError(
                path, f"maintenance[{i}].name", f"{w.name!r} names an earlier window too"
            )
        windows.append(w)
    return tuple(windows)


def _window(path: str, i: int, body: Any) -> Window:
    key = f"maintenance[{i}]"
    body = _table(body, path, key)
    for k in body:
        if k not in MAINTENANCE_KEYS:
            raise ConfigError(
                path, f"{key}.{k}", f"unknown key (takes {', '.join(MAINTENANCE_KEYS)})"
            )
    for k in ("subjects", "schedule", "duration"):
        if k not in body:
            raise ConfigError(path, f"{key}.{k}", "missing")
    subjects = _strings(path, f"{key}.subjects", body["subjects"], "subject patterns")
    for j, pattern in enumerate(subjects, 1):
        why = valid_pattern(pattern)
        if why is not None:
            raise ConfigError(path, f"{key}.subjects[{j}]", f"{pattern!r} {why}")
    zone = body.get("timezone", "UTC")
    if not isinstance(zone, str) or not zone:
        raise ConfigError(path, f"{key}.timezone", f"must be a time zone name, not {_kind(zone)}")
    schedule = body["schedule"]
    if not isinstance(schedule, str):
        raise ConfigError(path, f"{key}.schedule", f"must be a cron string, not {_kind(schedule)}")
    why = check_zone(zone)
    if why is not None:
        raise ConfigError(path, f"{key}.timezone", why)
    why = check_schedule(schedule, zone)
    if why is not None:
        raise ConfigError(path, f"{key}.schedule", why)
    duration = _repeat(path, f"{key}.duration", body["duration"])
    if duration > MAX_MAINTENANCE_S:
        raise ConfigError(path, f"{key}.duration", f"{body['duration']!r} is longer than 366 days")
    name = body.get("name", key)
    if not isinstance(name, str) or not name.strip() or not name.isprintable() or len(name) > 64:
        raise ConfigError(path, f"{key}.name", "must be printable text of 1 to 64 characters")
    return Window(
        name=name, subjects=subjects, schedule=schedule, duration_s=duration, timezone=zone
    )


MAX_MAINTENANCE_S = 366 * 24 * 3600.0


def _repeat(path: str, where: str, text: Any) -> float:
    if not isinstance(text, str):
        raise ConfigError(path, where, f'must be a duration string like "30m", not {_kind(text)}')
    try:
        d = parse_duration(text)
    except InvalidDuration as e:
        raise ConfigError(path, where, f"{text!r} is not a duration (examples: 30m, 1h30m)") from e
    if d.total_seconds() <= 0:
        raise ConfigError(path, where, f"{text!r} must be greater than 0")
    return d.total_seconds()


def can_match_under(pattern: str, prefix: str) -> bool:
    """Whether ``pattern`` can match some subject under the literal ``prefix`` (one that
    ends with a dot, like ``heartbeat.``; any other prefix: assume it can)."""
    if not prefix.endswith("."):
        return True
    head, tokens = prefix[:-1].split("."), pattern.split(".")
    for i, want in enumerate(head):
        if i >= len(tokens):
            return False
        if tokens[i] == ">":
            return True
        if tokens[i] not in ("*", want):
            return False
    return len(tokens) > len(head)


def unreachable(config: Config, prefix: str) -> list[tuple[str, str]]:
    """``(key, pattern)`` of every route or maintenance pattern no subject under
    ``prefix`` can match (worth a warning: it never applies)."""
    tables = [("routes", r.subjects) for r in config.routes]
    tables += [("maintenance", w.subjects) for w in config.maintenance]
    seen: dict[str, int] = {}
    out = []
    for table, subjects in tables:
        i = seen[table] = seen.get(table, 0) + 1
        out += [
            (f"{table}[{i}].subjects[{j}]", p)
            for j, p in enumerate(subjects, 1)
            if not can_match_under(p, prefix)
        ]
    return out


# --- building --------------------------------------------------------------------------


def build_notifiers(specs: Sequence[ChannelSpec], session: aiohttp.ClientSession) -> list[Notifier]:
    """One notifier per spec, in order; a constructor's refusal (an Apprise URL it does
    not know, Apprise not installed) is a :class:`ConfigError` naming the channel."""
    out: list[Notifier] = []
    for spec in specs:
        try:
            out.append(CHANNEL_TYPES[spec.type].build(session, spec.name, dict(spec.options)))
        except (ValueError, ImportError) as e:
            raise ConfigError(spec.source, spec.key, str(e)) from e
    return out
