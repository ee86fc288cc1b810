"""``[[maintenance]]`` in the config file: every key, and every error naming the key."""

from __future__ import annotations

import pytest

from heartbeat.config import ConfigError, load_config, unreachable
from heartbeat.maintenance import Window

PATH = "/etc/hb/config.toml"


def load(text: str) -> tuple[Window, ...]:
    return load_config(text, path=PATH, read_file=_no_files).maintenance


def _no_files(path: str) -> str:
    raise FileNotFoundError(path)


def test_every_key() -> None:
    windows = load(
        """
[[maintenance]]
subjects = ["heartbeat.batch.>", "heartbeat.*.etl"]
schedule = "0 2 * * SUN"
duration = "2h30m"
timezone = "Europe/Berlin"
name = "nightly batch"

[[maintenance]]
subjects = ["heartbeat.db.main"]
schedule = "*/10 * * * * *"
duration = "1.5s"
"""
    )
    assert windows == (
        Window(
            "nightly batch",
            ("heartbeat.batch.>", "heartbeat.*.etl"),
            "0 2 * * SUN",
            9000.0,
            "Europe/Berlin",
        ),
        Window("maintenance[2]", ("heartbeat.db.main",), "*/10 * * * * *", 1.5, "UTC"),
    )


def test_no_maintenance_is_no_windows() -> None:
    assert load("") == ()


GOOD = {"subjects": '["heartbeat.batch.>"]', "schedule": '"0 2 * * *"', "duration": '"2h"'}


def entry(**keys: str | None) -> str:
    body = {**GOOD, **keys}
    lines = [f"{k} = {v}" for k, v in body.items() if v is not None]
    return "[[maintenance]]\n" + "\n".join(lines) + "\n"


# (name, config text, key named, what is said)
ERRORS = [
    ("not an array", "[maintenance]\nsubjects = []\n", "maintenance", "array of tables"),
    ("not a table", "maintenance = [1]\n", "maintenance[1]", "must be a table"),
    ("unknown key", entry(window='"2h"'), "maintenance[1].window", "unknown key (takes subjects"),
    ("no subjects", entry(subjects=None), "maintenance[1].subjects", "missing"),
    ("no schedule", entry(schedule=None), "maintenance[1].schedule", "missing"),
    ("no duration", entry(duration=None), "maintenance[1].duration", "missing"),
    ("empty subjects", entry(subjects="[]"), "maintenance[1].subjects", "non-empty array"),
    ("a subject not a string", entry(subjects="[1]"), "maintenance[1].subjects[1]", "string"),
    (
        "a bad pattern",
        entry(subjects='["heartbeat.>", "a..b"]'),
        "maintenance[1].subjects[2]",
        "'a..b' has an empty token",
    ),
    ("a bad wildcard", entry(subjects='["a.>.b"]'), "maintenance[1].subjects[1]", "'>' only"),
    ("schedule not a string", entry(schedule="5"), "maintenance[1].schedule", "cron string"),
    ("four fields", entry(schedule='"0 2 * *"'), "maintenance[1].schedule", "not a cron"),
    ("no such day", entry(schedule='"0 0 30 2 *"'), "maintenance[1].schedule", "not a cron"),
    ("no such zone", entry(timezone='"Mars/Base"'), "maintenance[1].timezone", "time zone"),
    ("zone not a string", entry(timezone="1"), "maintenance[1].timezone", "time zone name"),
    ("duration a number", entry(duration="7200"), "maintenance[1].duration", "duration string"),
    ("duration not Go", entry(duration='"2 hours"'), "maintenance[1].duration", "not a duration"),
    ("duration zero", entry(duration='"0s"'), "maintenance[1].duration", "greater than 0"),
    ("duration negative", entry(duration='"-1h"'), "maintenance[1].duration", "greater than 0"),
    ("duration a year+", entry(duration='"9000h"'), "maintenance[1].duration", "366 days"),
    ("name empty", entry(name='" "'), "maintenance[1].name", "1 to 64"),
    ("name not text", entry(name="3"), "maintenance[1].name", "1 to 64"),
    ("name with a newline", entry(name='"a\\nb"'), "maintenance[1].name", "printable"),
    (
        "the same name twice",
        entry(name='"n"') + entry(name='"n"'),
        "maintenance[2].name",
        "'n' names an earlier window too",
    ),
    (
        "the default name taken",
        entry(name='"maintenance[2]"') + entry(),
        "maintenance[2].name",
        "earlier window",
    ),
]


@pytest.mark.parametrize(("name", "text", "key", "what"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_the_key(name: str, text: str, key: str, what: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(text)
    assert e.value.path == PATH and e.value.key == key
    assert what in e.value.what
    assert str(e.value).startswith(f"{PATH}: {key}: ")
    assert "\n" not in str(e.value)


def test_patterns_outside_the_prefix_are_reported() -> None:
    cfg = load_config(
        entry(subjects='["heartbeat.batch.>", "hb.x.>"]')
        + "[channels.l]\ntype = 'log'\n[[routes]]\nsubjects = ['other.>']\nchannels = ['l']\n",
        path=PATH,
        read_file=_no_files,
    )
    assert unreachable(cfg, "heartbeat.") == [
        ("routes[1].subjects[1]", "other.>"),
        ("maintenance[1].subjects[2]", "hb.x.>"),
    ]
