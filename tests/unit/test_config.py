"""The config file parser: every key, every error naming the file, the key and what."""

from __future__ import annotations

import errno

import aiohttp
import pytest

from heartbeat.config import (
    CHANNEL_TYPES,
    FLAGS,
    ChannelSpec,
    Config,
    ConfigError,
    build_notifiers,
    can_match_under,
    load_config,
    merge_flags,
    unreachable,
)
from heartbeat.depends import Dependency
from heartbeat.routing import Route

PATH = "/etc/hb/config.toml"
LOG = (ChannelSpec("log", "log", {}, FLAGS),)
FILES = {
    "/run/secrets/pd": "R0KEY\n",
    "/etc/hb/relative": "  relsecret  \n",
    "/run/secrets/empty": " \n",
    "/run/secrets/urls": "# apprise\njson://a.example/x\n\n  json://b.example/y \n",
}


def read_file(path: str) -> str:
    try:
        return FILES[path]
    except KeyError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None


def load(text: str, extra: tuple[ChannelSpec, ...] = ()) -> Config:
    return load_config(text, path=PATH, read_file=read_file, extra=extra)


FULL = """
[channels.oncall]
type = "pagerduty"
routing_key_file = "/run/secrets/pd"
severity = "error"
api_url = "http://127.0.0.1:9/pd"

[channels.batch]
type = "slack"
url = "https://hooks.slack.com/services/T/B/X"

[channels.mail-ops]
type = "smtp"
host = "smtp.example.org"
port = 465
security = "tls"
sender = "hb <hb@example.org>"
recipients = ["ops@example.org"]
username = "hb"
password_file = "relative"
timeout_s = 5

[channels.tg]
type = "telegram"
token = "123:abc"
chat_id = -1001234

[channels.all_of_apprise]
type = "apprise"
urls_file = "/run/secrets/urls"

[channels.quiet]
type = "log"

[[maintenance]]
subjects = ["heartbeat.batch.>"]
schedule = "0 2 * * SUN"
duration = "2h"

[[depends]]
subjects = ["heartbeat.dc1.>"]
on = "heartbeat.dc1.uplink"

[[routes]]
subjects = ["heartbeat.db.>", "heartbeat.*.primary"]
channels = ["oncall"]
repeat_every = "30m"
continue = true

[[routes]]
subjects = [">"]
channels = ["batch", "log"]
"""


def test_every_key_of_a_full_config() -> None:
    cfg = load(FULL, (ChannelSpec("log", "log", {}, FLAGS),))
    assert cfg.names == ("oncall", "batch", "mail-ops", "tg", "all_of_apprise", "quiet", "log")
    by = {c.name: c for c in cfg.channels}
    assert by["oncall"].options == {
        "routing_key": "R0KEY",
        "severity": "error",
        "api_url": "http://127.0.0.1:9/pd",
    }
    assert by["mail-ops"].type == "email"
    assert by["mail-ops"].options["password"] == "relsecret"  # relative to the file
    assert by["mail-ops"].options["timeout_s"] == 5.0
    assert by["tg"].options["chat_id"] == "-1001234"
    assert by["all_of_apprise"].options["urls"] == ["json://a.example/x", "json://b.example/y"]
    assert by["oncall"].source == PATH and by["log"].source == FLAGS
    assert cfg.routes == (
        Route(("heartbeat.db.>", "heartbeat.*.primary"), ("oncall",), 1800.0, True),
        Route((">",), ("batch", "log"), None, False),
    )
    assert cfg.depends == (Dependency(("heartbeat.dc1.>",), "heartbeat.dc1.uplink"),)
    assert "R0KEY" not in repr(cfg)


def test_an_empty_file_and_no_flags_define_nothing() -> None:
    cfg = load("")
    assert cfg.channels == () and cfg.routes == ()
    assert merge_flags(()).channels == ()


def test_every_type_in_the_table_takes_what_its_constructor_takes() -> None:
    assert set(CHANNEL_TYPES) == {
        "slack", "teams", "discord", "telegram", "ntfy", "email", "pagerduty", "opsgenie",
        "apprise", "pushover", "webhook", "log",
    }  # fmt: skip


async def test_built_notifiers_carry_the_config_names() -> None:
    cfg = load(
        '[channels.a]\ntype="webhook"\nurl="http://127.0.0.1:9/"\nsecret="s"\n'
        '[channels.b]\ntype="ntfy"\nurl="http://127.0.0.1:9/t"\n'
        '[channels.c]\ntype="opsgenie"\napi_key="k"\npriority="P5"\n'
        '[channels.d]\ntype="teams"\nurl="https://x.example/"\n'
        '[channels.e]\ntype="discord"\nurl="https://x.example/"\n'
        '[channels.f]\ntype="pushover"\nuser="u"\ntoken="t"\n'
        '[channels.g]\ntype="email"\nhost="h"\nsender="s@x"\nrecipients=["r@x"]\n'
    )
    async with aiohttp.ClientSession() as session:
        built = build_notifiers(cfg.channels, session)
    assert [n.name for n in built] == ["a", "b", "c", "d", "e", "f", "g"]
    assert [type(n).__name__ for n in built] == [
        "WebhookNotifier", "NtfyNotifier", "OpsgenieNotifier", "TeamsNotifier",
        "DiscordNotifier", "PushoverNotifier", "EmailNotifier",
    ]  # fmt: skip


def test_a_channel_defined_by_file_and_flag_is_an_error() -> None:
    with pytest.raises(ConfigError) as e:
        load('[channels.log]\ntype="log"\n', (ChannelSpec("log", "log", {}, FLAGS),))
    assert str(e.value) == (
        f"{PATH}: channels.log: channel 'log' is also defined by flags; give it another name"
    )


UNKNOWN_TOP = (
    "unknown top-level key (expected [channels.NAME], [[routes]], [[maintenance]] or [[depends]])"
)
ERRORS = [
    ("x = 1", "x", UNKNOWN_TOP),
    ("[x]", "x", UNKNOWN_TOP),
    ("channels = 3", "channels", "must be a table, not an integer"),
    ("[channels]\na = 3", "channels.a", "must be a table, not an integer"),
    ('[channels."1x"]\ntype="log"', "channels.1x", "a channel name must start with a letter"),
    ('[channels."a b"]\ntype="log"', "channels.a b", "a channel name must start with a letter"),
    ('[channels."web:x"]\ntype="log"', "channels.web:x", "a channel name must start with"),
    ("[channels.a]", "channels.a.type", "missing (one of slack, teams,"),
    ("[channels.a]\ntype = 1", "channels.a.type", "must be a string, not an integer"),
    ('[channels.a]\ntype = "irc"', "channels.a.type", "unknown type 'irc' (one of slack,"),
    (
        '[channels.a]\ntype = "log"\nurl = "x"',
        "channels.a.url",
        "unknown key for type 'log' (takes none)",
    ),
    (
        '[channels.a]\ntype = "slack"\nurl = "https://x/"\nchannel = "#ops"',
        "channels.a.channel",
        "unknown key for type 'slack' (takes url, url_file)",
    ),
    (
        '[channels.a]\ntype = "telegram"\ntoken = "t"\nchat_id_file = "/x"',
        "channels.a.chat_id_file",
        "unknown key for type 'telegram'",
    ),
    (
        '[channels.a]\ntype = "slack"',
        "channels.a.url",
        "missing: this channel needs url (or url_file)",
    ),
    (
        '[channels.a]\ntype = "email"\nhost="h"\nsender="s"',
        "channels.a.recipients",
        "missing: this channel needs recipients",
    ),
    ('[channels.a]\ntype = "slack"\nurl = 5', "channels.a.url", "must be a string, not an integer"),
    ('[channels.a]\ntype = "slack"\nurl = ""', "channels.a.url", "must not be empty"),
    (
        '[channels.a]\ntype = "slack"\nurl = "ftp://x"',
        "channels.a.url",
        "must be an http:// or https:// URL",
    ),
    (
        '[channels.a]\ntype = "slack"\nurl = "https://"',
        "channels.a.url",
        "must be an http:// or https:// URL with a host",
    ),
    (
        '[channels.a]\ntype = "webhook"\nurl = "http://h:99999/"',
        "channels.a.url",
        "must be an http:// or https:// URL with a host",
    ),
    (
        '[channels.a]\ntype = "telegram"\ntoken="t"\nchat_id = true',
        "channels.a.chat_id",
        "must be a string or an integer, not a boolean",
    ),
    (
        '[channels.a]\ntype = "pagerduty"\nrouting_key="k"\nseverity = "high"',
        "channels.a.severity",
        "'high' is not one of critical, error, warning, info",
    ),
    (
        '[channels.a]\ntype = "opsgenie"\napi_key="k"\npriority = "P9"',
        "channels.a.priority",
        "'P9' is not one of P1, P2, P3, P4, P5",
    ),
    (
        '[channels.a]\ntype = "ntfy"\nurl="http://x/t"\nalert_priority = "loud"',
        "channels.a.alert_priority",
        "'loud' is not one of min, low",
    ),
    (
        '[channels.a]\ntype = "email"\nhost="h"\nsender="s"\nrecipients=["r"]\nport = "25"',
        "channels.a.port",
        "must be an integer, not a string",
    ),
    (
        '[channels.a]\ntype = "email"\nhost="h"\nsender="s"\nrecipients=["r"]\nport = 70000',
        "channels.a.port",
        "70000 is not a port (1-65535)",
    ),
    (
        '[channels.a]\ntype = "email"\nhost="h"\nsender="s"\nrecipients=["r"]\ntimeout_s = 0',
        "channels.a.timeout_s",
        "must be greater than 0, got 0",
    ),
    (
        '[channels.a]\ntype = "email"\nhost="h"\nsender="s"\nrecipients="r"',
        "channels.a.recipients",
        "must be a non-empty array of strings",
    ),
    (
        '[channels.a]\ntype = "email"\nhost="h"\nsender="s"\nrecipients=["r", 3]',
        "channels.a.recipients[2]",
        "must be a non-empty string",
    ),
    (
        '[channels.a]\ntype = "apprise"\nurls = []',
        "channels.a.urls",
        "must be a non-empty array of strings",
    ),
    (
        '[channels.a]\ntype = "pagerduty"\nrouting_key = "k"\nrouting_key_file = "/run/secrets/pd"',
        "channels.a.routing_key_file",
        "set either routing_key or routing_key_file, not both",
    ),
    (
        '[channels.a]\ntype = "pagerduty"\nrouting_key_file = "/run/secrets/nope"',
        "channels.a.routing_key_file",
        "cannot read /run/secrets/nope: No such file or directory",
    ),
    (
        '[channels.a]\ntype = "pagerduty"\nrouting_key_file = "/run/secrets/empty"',
        "channels.a.routing_key_file",
        "/run/secrets/empty is empty",
    ),
    (
        '[channels.a]\ntype = "pagerduty"\nrouting_key_file = 3',
        "channels.a.routing_key_file",
        "must be a file path, not an integer",
    ),
    ("routes = 1", "routes", "must be an array of tables ([[routes]])"),
    ("routes = [1]", "routes[1]", "must be a table, not an integer"),
    ('[[routes]]\nchannels = ["log"]', "routes[1].subjects", "missing"),
    ('[[routes]]\nsubjects = [">"]', "routes[1].channels", "missing"),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = ["log"]\nwhen = "always"',
        "routes[1].when",
        "unknown key (takes subjects, channels, repeat_every, continue)",
    ),
    (
        '[[routes]]\nsubjects = ">"\nchannels = ["log"]',
        "routes[1].subjects",
        "must be a non-empty array of subject patterns",
    ),
    (
        '[[routes]]\nsubjects = []\nchannels = ["log"]',
        "routes[1].subjects",
        "must be a non-empty array of subject patterns",
    ),
    (
        '[[routes]]\nsubjects = [1]\nchannels = ["log"]',
        "routes[1].subjects[1]",
        "must be a string, not an integer",
    ),
    (
        '[[routes]]\nsubjects = ["a.>.b"]\nchannels = ["log"]',
        "routes[1].subjects[1]",
        "'a.>.b' may use '>' only as its whole last token",
    ),
    (
        '[[routes]]\nsubjects = ["a..b"]\nchannels = ["log"]',
        "routes[1].subjects[1]",
        "'a..b' has an empty token",
    ),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = []',
        "routes[1].channels",
        "must be a non-empty array of channel names",
    ),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = ["log"]\n[[routes]]\nsubjects = [">"]\n'
        'channels = ["log", "pager"]',
        "routes[2].channels[2]",
        "no channel named 'pager' (defined: log)",
    ),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = ["log"]\nrepeat_every = 30',
        "routes[1].repeat_every",
        'must be a duration string like "30m", not an integer',
    ),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = ["log"]\nrepeat_every = "30 minutes"',
        "routes[1].repeat_every",
        "'30 minutes' is not a duration (examples: 30m, 1h30m)",
    ),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = ["log"]\nrepeat_every = "0s"',
        "routes[1].repeat_every",
        "'0s' must be greater than 0",
    ),
    (
        '[[routes]]\nsubjects = [">"]\nchannels = ["log"]\ncontinue = "yes"',
        "routes[1].continue",
        "must be true or false, not a string",
    ),
]


@pytest.mark.parametrize(("text", "key", "what"), ERRORS, ids=[e[1] for e in ERRORS])
def test_each_error_names_the_file_the_key_and_what(text: str, key: str, what: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(text, (ChannelSpec("log", "log", {}, FLAGS),))
    assert (e.value.path, e.value.key) == (PATH, key)
    assert e.value.what.startswith(what), e.value.what
    assert str(e.value) == f"{PATH}: {key}: {e.value.what}"
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_toml() -> None:
    with pytest.raises(ConfigError) as e:
        load("[channels.a\n")
    assert e.value.key == "" and str(e.value).startswith(f"{PATH}: not valid TOML: ")


def test_secrets_in_errors_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as e:
        load('[channels.a]\ntype = "pagerduty"\nrouting_key = "SECRET"\nseverity = "x"')
    assert "SECRET" not in str(e.value)


async def test_a_constructor_refusal_is_a_config_error_naming_the_channel() -> None:
    spec = ChannelSpec("bad", "apprise", {"urls": ["notascheme"]}, PATH)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as e:
            build_notifiers([spec], session)
    assert e.value.path == PATH and e.value.key == "channels.bad"


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        (">", True),
        ("heartbeat.>", True),
        ("heartbeat.db.>", True),
        ("*.db.main", True),
        ("heartbeat.*", True),
        ("heartbeat", False),
        ("hb.db.>", False),
        ("*", False),
    ],
)
def test_route_patterns_that_can_never_apply_under_the_prefix(pattern: str, ok: bool) -> None:
    assert can_match_under(pattern, "heartbeat.") is ok
    assert can_match_under(pattern, "heartbeat") is True  # not a token prefix: no opinion


def test_unreachable_names_the_route_key() -> None:
    cfg = load('[[routes]]\nsubjects = [">", "hb.db.>"]\nchannels = ["log"]\n', LOG)
    assert unreachable(cfg, "heartbeat.") == [("routes[1].subjects[2]", "hb.db.>")]
