"""History and the live status commands, as processes: monitors on a real nats-server,
a recording webhook, ``kill -9`` of the leader, and the CLI reading it all back."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import nats
import pytest

import heartbeat
from tests.e2e.test_failover import (  # noqa: F401 (fleets is a fixture)
    Fleet,
    FleetFactory,
    exited,
    fleets,
)
from tests.harness import (
    NatsServer,
    Receiver,
    cli_binary,
    cli_env,
    eventually,
    names,
    notification_bodies,
    run_cli,
)

MS = timedelta(milliseconds=1)


def history_flags(unique: str) -> dict[str, str]:
    return {"history_stream": f"EV_{unique}", "history_prefix": f"ev{unique}"}


def read_events(url: str, unique: str, *args: str) -> list[dict[str, Any]]:
    flags = history_flags(unique)
    out = run_cli(
        "history", *args, "--json", "--nats-url", url,
        "--history-stream", flags["history_stream"], "--history-prefix", flags["history_prefix"],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def count_of(e: dict[str, Any]) -> int:
    return int(str(e["notification_id"]).rpartition("-")[2])


async def test_an_incident_with_a_leader_kill_is_recorded_once_each_in_order(
    nats_server: NatsServer,
    receiver: Receiver,
    fleets: FleetFactory,  # noqa: F811 (the fixture)
    unique: str,
) -> None:
    """Alert (the channel answers 500, then 200: it recovers), repeats, ``kill -9`` of
    the leader, repeats by the new leader, ``kill -9`` of it, repeats by a third,
    resolved: every transition once, each notification's ``sent`` once (even when a
    kill made the channel get it twice), in order, read back with ``nats-heartbeat
    history``."""
    receiver.script = [500]  # the first delivery fails once, then every one succeeds
    fleet: Fleet = fleets(nats_server.url, unique, receiver, **history_flags(unique))
    fleet.start(3)
    await fleet.wait_ready(fleet.replicas)
    first = await fleet.wait_sole_leader(15.0)
    subject = names(unique)["prefix"] + "db.main"
    nc = await nats.connect(nats_server.url)
    try:
        async with heartbeat.beating(nc, subject, interval=200 * MS):
            await eventually(lambda: _status_has(fleet, first, subject), 10, "first beat")
        await receiver.wait_for(3, timeout=15)  # 500, the alert, a repeat
        first.proc.send_signal(signal.SIGKILL)
        assert await exited(first.proc) == -signal.SIGKILL
        second = await fleet.wait_leader(15.0, exclude=[first])

        def by(replica_id: str) -> bool:
            return any(b["monitor"] == replica_id for b in _bodies(receiver))

        await eventually(lambda: by(second.replica_id), 15, "a repeat by the new leader")
        second.proc.send_signal(signal.SIGKILL)  # and once more, mid-incident
        assert await exited(second.proc) == -signal.SIGKILL
        third = await fleet.wait_leader(15.0, exclude=[first, second])
        await eventually(lambda: by(third.replica_id), 15, "a repeat by the third leader")
        async with heartbeat.beating(nc, subject, interval=200 * MS):
            await eventually(
                lambda: any(b["event"] == "resolved" for b in _bodies(receiver)), 15, "resolved"
            )
    finally:
        await nc.close()

    # One incident: its alert id (once beats stop again after the resolve, a new one starts).
    alert_id = _bodies(receiver)[0]["alert_id"]
    told = {b["notification_id"] for b in _bodies(receiver) if b["alert_id"] == alert_id}

    def settled() -> list[dict[str, Any]] | None:
        got = [
            e for e in read_events(nats_server.url, unique, subject) if e["alert_id"] == alert_id
        ]
        sent = {e["notification_id"] for e in got if e.get("result") == "sent"}
        return got if sent >= told else None

    got = await eventually(settled, 20, "a sent event for every notification told")
    transitions = [e for e in got if e["kind"] != "delivery"]
    deliveries = [e for e in got if e["kind"] == "delivery"]
    kinds = [e["kind"] for e in transitions]
    assert kinds[:2] == ["late", "alert"] and kinds[-1] == "resolved", kinds
    assert set(kinds[2:-1]) == {"repeat"} and len(kinds) >= 5, kinds
    notified = transitions[1:]  # late is no notification
    assert [count_of(e) for e in notified] == list(range(1, len(notified) + 1))
    assert len({e["alert_id"] for e in got}) == 1
    # Exactly once: one event per id, one transition and one sent per notification.
    assert len({e["id"] for e in got}) == len(got)
    sent = Counter(e["notification_id"] for e in deliveries if e["result"] == "sent")
    assert set(sent) == {e["notification_id"] for e in notified} == told
    assert set(sent.values()) == {1}
    assert not [e for e in deliveries if e["result"] == "dropped"]
    # In order: each notification's transition comes before its delivery outcome(s).
    place = {e["id"]: i for i, e in enumerate(got)}
    for t in notified:
        for d in deliveries:
            if d["notification_id"] == t["notification_id"]:
                assert place[t["id"]] < place[d["id"]]
    assert "2 attempts" in next(d["detail"] for d in deliveries if count_of(d) == 1)
    leaders = {first.replica_id, second.replica_id, third.replica_id}
    assert {e["monitor"] for e in transitions} >= leaders
    # The table: TIME SUBJECT EVENT CHANNEL DETAIL, one line per event.
    flags = history_flags(unique)
    table = run_cli(
        "history", names(unique)["prefix"] + "db.>", "--since", "10m",
        "--nats-url", nats_server.url,
        "--history-stream", flags["history_stream"], "--history-prefix", flags["history_prefix"],
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "SUBJECT", "EVENT", "CHANNEL", "DETAIL"]
    assert len(lines) >= 1 + len(got)
    assert [line.split()[1:3] for line in lines[1:3]] == [[subject, "late"], [subject, "alert"]]
    assert any(line.split()[2] == "sent" and "webhook:" in line for line in lines)
    nothing = run_cli(
        "history", "nomatch.>", "--nats-url", nats_server.url,
        "--history-stream", flags["history_stream"], "--history-prefix", flags["history_prefix"],
    )  # fmt: skip
    assert (nothing.returncode, nothing.stdout) == (0, "No events in the last 24h0m0s.\n")
    times = Counter(b["notification_id"] for b in _bodies(receiver))
    twice = [nid for nid, n in times.items() if n > 1]
    print(
        f"{len(transitions)} transitions, {len(deliveries)} delivery events, {len(told)} told, "
        f"{len(twice)} told twice (a kill between send and cross-off), history once each"
    )


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [
        b
        for r in list(receiver.requests)
        if r.method == "POST"
        for b in notification_bodies(r.json())
    ]


async def _status_has(fleet: Fleet, replica: Any, subject: str) -> bool:
    got = await fleet.status(replica)
    return got is not None and any(s["subject"] == subject for s in got["subjects"])


def test_history_refuses_bad_input_with_one_line() -> None:
    for args, needle in (
        (["a..b"], "empty token"),
        (["--since", "nope"], "not a duration"),
        (["--limit", "0"], "0"),
        (["--history-stream", "bad name"], "letters"),
    ):
        out = run_cli("history", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.splitlines()) == 1 and needle in out.stderr, (args, out.stderr)


def test_history_without_nats_exits_1_with_one_line() -> None:
    out = run_cli("history", "--nats-url", "nats://127.0.0.1:1", "--timeout", "2s")
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1, out.stderr


async def test_status_watch_and_from_kv(
    nats_server: NatsServer,
    receiver: Receiver,
    fleets: FleetFactory,  # noqa: F811 (the fixture)
    unique: str,
) -> None:
    """``--watch`` (not a terminal): tables one after another, a blank line apart, by
    count or until Ctrl-C (exit 0).  ``--from-kv`` with no monitor running prints the
    table the monitor printed."""
    fleet: Fleet = fleets(nats_server.url, unique, receiver, **history_flags(unique))
    (mon,) = fleet.start(1)
    await fleet.wait_ready([mon])
    prefix = names(unique)["prefix"]
    nc = await nats.connect(nats_server.url)
    try:
        async with heartbeat.beating(nc, prefix + "steady", interval=timedelta(hours=1)):
            async with heartbeat.beating(nc, prefix + "stops", interval=200 * MS):
                await eventually(lambda: _status_has(fleet, mon, prefix + "stops"), 10, "beats")
            await receiver.wait_for(1, timeout=10)  # the alert: its record is committed
    finally:
        await nc.close()
    url = mon.url + "/"

    out = run_cli("status", "--url", url, "--watch", "0.2", "--count", "2")
    assert out.returncode == 1, out.stderr  # an alert fires
    frames = out.stdout.split("\n\nObserved at: ")
    assert len(frames) == 2 and out.stdout.startswith("Observed at: "), out.stdout
    assert all("ALERT!" in f and prefix + "steady" in f for f in frames)
    assert "\x1b[" not in out.stdout

    proc = _spawn("status", "--url", url, "--watch", "200ms")
    try:
        assert proc.stdout is not None
        seen = 0
        deadline = time.monotonic() + 15
        while seen < 2 and time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stdout.readline)
            seen += line.startswith(b"Observed at: ")
        assert seen == 2
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    asked = run_cli("status", "--url", url)
    n = names(unique)
    fleet.replicas[0].proc.stop()
    kv = run_cli(
        "status", "--from-kv", "--nats-url", nats_server.url,
        "--stream", n["stream"], "--state-bucket", n["bucket"],
    )  # fmt: skip
    assert kv.returncode == asked.returncode == 1, kv.stderr
    assert _rows(kv.stdout) == _rows(asked.stdout)
    only = run_cli(
        "status", "--from-kv", "--state", "ok", "--nats-url", nats_server.url,
        "--stream", n["stream"], "--state-bucket", n["bucket"], "--json",
    )  # fmt: skip
    assert only.returncode == 0, only.stderr
    assert [s["subject"] for s in json.loads(only.stdout)["subjects"]] == [prefix + "steady"]
    missing = run_cli(
        "status", "--from-kv", "--nats-url", nats_server.url, "--state-bucket", "NOPE_" + unique
    )
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1, missing.stderr


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [cli_binary(), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=cli_env(),
    )  # fmt: skip


def _rows(table: str) -> list[list[str]]:
    """STATUS and SUBJECT of each row (the rest moves with the clock)."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("STATUS"))
    return [line.split()[:2] for line in lines[start:] if line.strip()][:-1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--count", "2"], "--count needs --watch"),
        (["--watch", "0"], "greater than 0"),
        (["--from-kv", "--state", "maint"], "needs a monitor"),
    ],
)
def test_status_watch_refuses_bad_input(args: list[str], needle: str) -> None:
    out = run_cli("status", *args)
    assert out.returncode == 2 and needle in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--history-prefix", "heartbeat.events"], "overlaps --subject-prefix"),
        (["--history-prefix", "ev.>"], "no wildcards"),
        (["--history-stream", "a b"], "letters"),
        (["--history-max-age", "soon"], "not a duration"),
    ],
)
def test_monitor_refuses_bad_history_flags(args: list[str], needle: str) -> None:
    out = run_cli("monitor", "--notify-log", *args)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1
