"""``[[depends]]`` in the config file: what it accepts, and every error naming the key."""

from __future__ import annotations

import pytest

from heartbeat.config import Config, ConfigError, load_config
from heartbeat.depends import Dependency

PATH = "/etc/hb/config.toml"


def load(text: str) -> Config:
    def no_files(path: str) -> str:
        raise FileNotFoundError(path)

    return load_config(text, path=PATH, read_file=no_files)


def test_dependencies_in_order() -> None:
    cfg = load(
        """
[[depends]]
subjects = ["heartbeat.dc1.>"]
on = "heartbeat.dc1.uplink"     # matches its own pattern: never depends on itself

[[depends]]
subjects = ["heartbeat.dc1.uplink", "heartbeat.dc2.*"]
on = "heartbeat.core"
"""
    )
    assert cfg.depends == (
        Dependency(("heartbeat.dc1.>",), "heartbeat.dc1.uplink"),
        Dependency(("heartbeat.dc1.uplink", "heartbeat.dc2.*"), "heartbeat.core"),
    )


def test_no_dependencies() -> None:
    assert load("").depends == ()


ERRORS = [
    ("depends = 3", "depends", "must be an array of tables ([[depends]])"),
    ("[depends]\non = 'a.b'", "depends", "must be an array of tables ([[depends]])"),
    ("depends = [3]", "depends[1]", "must be a table, not an integer"),
    ("[[depends]]\non = 'a.b'", "depends[1].subjects", "missing"),
    ("[[depends]]\nsubjects = ['a.>']", "depends[1].on", "missing"),
    ("[[depends]]\nsubjects = []\non = 'a.b'", "depends[1].subjects", "must be a non-empty array"),
    ("[[depends]]\nsubjects = 'a.>'\non = 'a.b'", "depends[1].subjects", "must be a non-empty"),
    ("[[depends]]\nsubjects = [1]\non = 'a.b'", "depends[1].subjects[1]", "must be a string"),
    ("[[depends]]\nsubjects = ['a..b']\non = 'a.b'", "depends[1].subjects[1]", "'a..b' has an"),
    ("[[depends]]\nsubjects = ['a.>.b']\non = 'a.b'", "depends[1].subjects[1]", "'a.>.b' may use"),
    ("[[depends]]\nsubjects = ['a.>']\non = 1", "depends[1].on", "must be a subject string"),
    ("[[depends]]\nsubjects = ['a.>']\non = 'a.*'", "depends[1].on", "'a.*' must be one exact"),
    ("[[depends]]\nsubjects = ['a.>']\non = 'a.>'", "depends[1].on", "'a.>' must be one exact"),
    ("[[depends]]\nsubjects = ['a.>']\non = ''", "depends[1].on", "'' must be one exact"),
    (
        "[[depends]]\nsubjects = ['a.>']\non = 'a.b'\nwhen = 'x'",
        "depends[1].when",
        "unknown key (takes subjects, on)",
    ),
    (
        "[[depends]]\nsubjects = ['a.>']\non = 'b.c'\n[[depends]]\nsubjects = ['b.>']\non = 'a.d'",
        "depends",
        "dependency cycle: b.c -> a.d -> b.c (each depends on the next)",
    ),
    (
        "[[depends]]\nsubjects = ['dc1.>']\non = 'dc1.uplink'\n"
        "[[depends]]\nsubjects = ['dc1.>']\non = 'dc1.power'",
        "depends",
        "dependency cycle: dc1.uplink -> dc1.power -> dc1.uplink",
    ),
]


@pytest.mark.parametrize(("text", "key", "what"), ERRORS, ids=[e[0] for e in ERRORS])
def test_each_error_names_the_key_and_what(text: str, key: str, what: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(text)
    assert (e.value.path, e.value.key) == (PATH, key)
    assert e.value.what.startswith(what), e.value.what
    assert str(e.value) == f"{PATH}: {key}: {e.value.what}"
    assert "\n" not in str(e.value)
