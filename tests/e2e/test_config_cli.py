"""The config file through the real CLI: errors, notify-test, routes, a routed monitor."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from tests.harness import (
    MonitorProcess,
    NatsServer,
    eventually,
    names,
    publish_when_ready,
    recording_receiver,
    run_cli,
    webhook_events,
)

MS = timedelta(milliseconds=1)


def write(tmp_path: Path, text: str, name: str = "heartbeat.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD = [
    ("[channels.a]\ntype = 'irc'\n", "channels.a.type: unknown type 'irc'"),
    ("[channels.a]\ntype = 'slack'\n", "channels.a.url: missing: this channel needs url"),
    (
        "[channels.a]\ntype = 'slack'\nurl_file = 'nope'\n",
        "channels.a.url_file: cannot read nope: No such file or directory",
    ),
    (
        "[channels.a]\ntype = 'log'\n[[routes]]\nsubjects = ['>']\nchannels = ['b']\n",
        "routes[1].channels[1]: no channel named 'b' (defined: a, log)",
    ),
    (
        "[channels.a]\ntype = 'log'\n[[routes]]\nsubjects = ['a.>.b']\nchannels = ['a']\n",
        "routes[1].subjects[1]: 'a.>.b' may use '>' only as its whole last token",
    ),
    (
        "[channels.a]\ntype = 'log'\n[[routes]]\nsubjects = ['>']\nchannels = ['a']\n"
        "repeat_every = '1 hour'\n",
        "routes[1].repeat_every: '1 hour' is not a duration",
    ),
    ("[channels.log]\ntype = 'log'\n", "channels.log: channel 'log' is also defined by flags"),
    ("[alerts]\n", "alerts: unknown top-level key"),
    ("[channels.a\n", "not valid TOML"),
]


@pytest.mark.parametrize("command", ["monitor", "notify-test", "routes"])
@pytest.mark.parametrize(("text", "message"), BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_a_bad_config_exits_2_with_one_line(
    tmp_path: Path, command: str, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    extra = ["--subject", "heartbeat.x"] if command == "routes" else []
    p = run_cli(command, "--config", path, "--notify-log", *extra, timeout=20)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"nats-heartbeat: {path}: ")
    assert message in lines[0]


def test_an_unreadable_config_file_exits_2(tmp_path: Path) -> None:
    p = run_cli("monitor", "--config", str(tmp_path / "missing.toml"), timeout=20)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"nats-heartbeat: {tmp_path / 'missing.toml'}: cannot read the config file: "
        "No such file or directory"
    )


async def test_notify_test_reports_each_channel_and_fails_if_one_did(tmp_path: Path) -> None:
    async with recording_receiver() as good, recording_receiver() as bad:
        bad.default_status = 500
        (tmp_path / "secret").write_text("hmac-key\n")
        path = write(
            tmp_path,
            f'[channels.good]\ntype = "webhook"\nurl = "{good.url}/hook"\n'
            'secret_file = "secret"\n'
            f'[channels.bad]\ntype = "slack"\nurl = "{bad.url}/services/x"\n',
        )
        p = await asyncio.to_thread(
            run_cli, "notify-test", "--config", path, "--timeout", "1s", timeout=30
        )
        assert p.returncode == 1, p.stderr
        rows = [line.split() for line in p.stdout.splitlines()]
        assert rows[0] == ["CHANNEL", "TYPE", "RESULT", "DETAIL"]
        assert rows[1][:4] == ["good", "webhook", "ok", "delivered"]
        assert rows[2][:3] == ["bad", "slack", "FAILED"] and "500" in p.stdout
        (sent,) = good.requests
        body = sent.json()
        assert body["event"] == "test" and "X-Heartbeat-Signature" in sent.headers
        assert len(bad.requests) >= 2  # retried under the shared policy
        assert "Test notification from nats-heartbeat" in bad.requests[0].json()["text"]

        # --channel picks; the flags' channels take part too.
        p = await asyncio.to_thread(
            run_cli,
            "notify-test", "--config", path, "--webhook-url", good.url,
            "--channel", "good", "--channel", "webhook:" + _hash(good.url),
            timeout=30,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr
        assert [r.split()[0] for r in p.stdout.splitlines()[1:]] == [
            "good",
            "webhook:" + _hash(good.url),
        ]
        p = await asyncio.to_thread(
            run_cli, "notify-test", "--config", path, "--channel", "nope", timeout=30
        )
        assert p.returncode == 2
        assert "--channel 'nope': no such channel (have: good, bad)" in p.stderr


def _hash(url: str) -> str:
    from heartbeat.notify.webhook import webhook_name

    return webhook_name(url).removeprefix("webhook:")


ROUTED = """
[channels.oncall]
type = "webhook"
url = "{oncall}"

[channels.batch]
type = "webhook"
url = "{batch}"

[[routes]]
subjects = ["{prefix}db.>"]
channels = ["oncall"]
repeat_every = "30m"

[[routes]]
subjects = ["{prefix}web.*"]
channels = ["batch"]
"""


def test_routes_prints_the_channels_and_repeat_of_a_subject(tmp_path: Path) -> None:
    path = write(tmp_path, ROUTED.format(oncall="http://a/", batch="http://b/", prefix="hb."))
    p = run_cli("routes", "--config", path, "--subject", "hb.db.main", timeout=20)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "hb.db.main: 1 channel(s); repeats every 30m0s (from its route)",
        "CHANNEL  TYPE",
        "oncall   webhook",
    ]
    p = run_cli(
        "routes", "--config", path, "--subject", "hb.web.api", "--repeat-every", "1h", timeout=20
    )
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == (
        "hb.web.api: 1 channel(s); repeats every 1h0m0s (the monitor's --repeat-every)"
    )
    p = run_cli("routes", "--config", path, "--subject", "hb.lost", timeout=20)
    assert p.returncode == 0
    assert p.stdout.startswith("hb.lost: UNROUTED: no route matches it")
    p = run_cli("routes", "--notify-log", "--subject", "hb.any", timeout=20)
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == (
        "hb.any: 1 channel(s) (no [[routes]]: every subject goes to every channel); "
        "repeats every 12h0m0s (the monitor's --repeat-every)"
    )
    p = run_cli("routes", "--config", path, "--subject", "hb.*", timeout=20)
    assert p.returncode == 2 and "must be a subject without wildcards" in p.stderr


@pytest.fixture
def monitors() -> Iterator[list[MonitorProcess]]:
    started: list[MonitorProcess] = []
    yield started
    for m in started:
        if m.running:
            m.stop(signal.SIGKILL)


async def test_a_monitor_with_a_config_routes_the_db_subject_only_to_its_channel(
    nats_server: NatsServer, nc: NATS, unique: str, tmp_path: Path, monitors: list[MonitorProcess]
) -> None:
    n = names(unique)
    db, web = n["prefix"] + "db.main", n["prefix"] + "web.api"
    async with recording_receiver() as oncall, recording_receiver() as batch:
        path = write(
            tmp_path,
            ROUTED.format(oncall=oncall.url, batch=batch.url, prefix=n["prefix"]).replace(
                f'["{n["prefix"]}web.*"]', '[">"]'
            ),
        )
        args = [
            "--nats-url", nats_server.url, "--subject-prefix", n["prefix"],
            "--stream", n["stream"], "--state-bucket", n["bucket"], "--poll", "100ms",
            "--tolerance", "200ms", "--status-addr", "", "--replica-id", f"m-{unique}",
            "--config", path,
        ]  # fmt: skip
        mon = MonitorProcess(args, tmp_path / "monitor.log")
        monitors.append(mon.start())
        await publish_when_ready(nc, db, 100 * MS)
        await publish_when_ready(nc, web, 100 * MS)
        await eventually(lambda: webhook_events(oncall, db), 20, what="db alert at oncall")
        await eventually(lambda: webhook_events(batch, web), 20, what="web alert at batch")
        assert mon.stop() == 0, mon.text()
        assert [e["event"] for e in webhook_events(oncall, db)] == ["alert"]
        assert webhook_events(batch, db) == [] and webhook_events(oncall, web) == []
        assert "channels: oncall (webhook), batch (webhook)" in mon.text()
