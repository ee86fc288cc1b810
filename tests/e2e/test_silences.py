"""Silences and pauses end to end: the CLI writes the bucket, monitor processes honour it.

Real nats-server, real ``nats-heartbeat monitor`` subprocesses (the fleets of
test_failover) and a recording webhook.  Absence is never waited out with a sleep: a
loud control subject, beating and stopping with the silenced one, proves the monitor
judged both before we look for what the silenced one did not send.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client as NATS

from tests.e2e.test_failover import TTL_S, Fleet, FleetFactory, Note, Replica, exited, notes
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    names,
    publish_when_ready,
    run_cli,
)

INTERVAL = timedelta(milliseconds=200)
WINDOW_S = 0.2 + 0.2  # interval (no grace) + --tolerance: a loud subject alerts this late


@pytest.fixture
async def fleets(tmp_path: Path) -> AsyncIterator[FleetFactory]:
    """test_failover's fleets, each with a silences bucket of its own."""
    made: list[Fleet] = []
    async with aiohttp.ClientSession() as session:

        def make(url: str, unique: str, receiver: Receiver, **flags: str) -> Fleet:
            n = names(unique)
            opts = {
                "--nats-url": url,
                "--subject-prefix": n["prefix"],
                "--stream": n["stream"],
                "--state-bucket": n["bucket"],
                "--silence-bucket": bucket(unique),
                "--poll": "100ms",
                "--tolerance": "200ms",
                "--repeat-every": "1s",
                "--lease-ttl": f"{TTL_S:g}s",
                "--webhook-url": receiver.url,
            }
            opts.update({"--" + k.replace("_", "-"): v for k, v in flags.items()})
            fleet = Fleet(session, tmp_path, [x for kv in opts.items() for x in kv], unique[:4])
            made.append(fleet)
            return fleet

        try:
            yield make
        finally:
            for fleet in made:
                await fleet.terminate_all()
            if made:
                print(f"(monitor logs in {tmp_path})")


def bucket(unique: str) -> str:
    return f"SIL_{unique}"


async def cli(server: NatsServer, unique: str, *args: str) -> Any:
    """``nats-heartbeat ARGS`` on the test's bucket, off the event loop (the receiver
    keeps answering meanwhile)."""
    flags = ["--nats-url", server.url, "--silence-bucket", bucket(unique)]
    return await asyncio.to_thread(run_cli, *args, *flags)


async def add(server: NatsServer, unique: str, *args: str) -> str:
    done = await cli(server, unique, "silence", "add", *args)
    assert done.returncode == 0, done.stderr
    sid: str = done.stdout.strip()
    assert len(sid) == 12 and int(sid, 16) >= 0, done.stdout
    return sid


async def listed(server: NatsServer, unique: str, *flags: str) -> list[dict[str, Any]]:
    done = await cli(server, unique, "silence", "ls", "--json", *flags)
    assert done.returncode == 0, done.stderr
    got: list[dict[str, Any]] = json.loads(done.stdout)
    return got


def ends_at(entry: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(entry["ends"]).timestamp()


async def beat_once(nc: NATS, *subjects: str) -> None:
    for s in subjects:
        await publish_when_ready(nc, s, INTERVAL)


def alerts(receiver: Receiver, subject: str) -> list[Note]:
    return [n for n in notes(receiver, subject) if n.event == "alert"]


async def alerted(receiver: Receiver, subject: str, timeout: float = 10.0) -> Note:
    got: list[Note] = await eventually(
        lambda: alerts(receiver, subject), timeout, f"{subject} alert"
    )
    return got[0]


def row(status: dict[str, Any] | None, subject: str) -> dict[str, Any] | None:
    for s in (status or {}).get("subjects", []):
        if s["subject"] == subject:
            got: dict[str, Any] = s
            return got
    return None


async def shows(fleet: Fleet, r: Replica, subject: str, quiet: str, ref: str) -> bool:
    """``r``'s status shows ``subject`` quiet for ``ref`` and lists that silence."""
    status = await fleet.status(r)
    s = row(status, subject)
    ids = [x["id"] for x in (status or {}).get("silences", [])]
    return s is not None and s.get("quiet") == quiet and s.get("quiet_ref") == ref and ref in ids


# ----- the acceptance scenarios --------------------------------------------------------------


async def test_silence_added_with_no_monitor_is_honoured_by_a_monitor_started_later(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    prefix = names(unique)["prefix"]
    quiet, loud = f"{prefix}db.main", f"{prefix}web.main"
    sid = await add(nats_server, unique, f"{prefix}db.>", "--for", "1h", "--reason", "upgrade")
    (entry,) = await listed(nats_server, unique)
    assert entry["id"] == sid and entry["subjects"] == [f"{prefix}db.>"]
    assert entry["reason"] == "upgrade" and entry["by"]

    fleet = fleets(nats_server.url, unique, receiver)
    (replica,) = fleet.start(1)
    await beat_once(nc, quiet, loud)
    await alerted(receiver, loud)  # the monitor judged both: the silenced one stays quiet
    await eventually(lambda: shows(fleet, replica, quiet, "silenced", sid), 5, "SILENCED")
    assert notes(receiver, quiet) == []
    status = await fleet.status(replica)
    s = row(status, quiet)
    assert s is not None and s["missing"] and not s["alert_active"], s

    # `status` marks the subject and prints the silence under the table; the filter and
    # the metrics count it.
    shown = await asyncio.to_thread(run_cli, "status", "--url", replica.url)
    assert f"SILENCED ({sid})" in shown.stdout, shown.stdout + shown.stderr
    assert "1 silence(s) and pause(s):" in shown.stdout and "upgrade" in shown.stdout
    async with fleet.session.get(replica.url + "/?state=silenced") as r:
        assert [x["subject"] for x in (await r.json())["subjects"]] == [quiet]
    async with fleet.session.get(replica.url + "/metrics") as r:
        assert 'nats_heartbeat_quiet_subjects{kind="silenced"} 1' in await r.text()


async def test_a_silence_expires_by_itself_and_the_subject_alerts_a_window_later(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    prefix = names(unique)["prefix"]
    subject = f"{prefix}batch.export"
    fleet = fleets(nats_server.url, unique, receiver)
    await fleet.wait_ready(fleet.start(1))
    sid = await add(nats_server, unique, subject, "--for", "3s", "--reason", "short")
    await beat_once(nc, subject)
    (entry,) = await listed(nats_server, unique)
    ends = ends_at(entry)
    note = await alerted(receiver, subject, timeout=10)
    after = note.at - ends
    print(f"\n[silence expiry] {sid} ended; alert {after:.2f}s after its end (window {WINDOW_S}s)")
    assert after >= WINDOW_S - 0.05, after  # not at the end: a full window after it
    assert after < WINDOW_S + 1.5, after
    assert [n.event for n in notes(receiver, subject)] == ["alert"]


async def test_three_replicas_keep_a_silence_across_a_leader_kill_and_rm_ends_it(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    prefix = names(unique)["prefix"]
    quiet, loud = f"{prefix}rack1.host", f"{prefix}rack2.host"
    fleet = fleets(nats_server.url, unique, receiver)
    replicas = fleet.start(3)
    await fleet.wait_ready(replicas)
    sid = await add(nats_server, unique, f"{prefix}rack1.*", "--for", "1h", "--reason", "rack work")
    await beat_once(nc, quiet, loud)
    await alerted(receiver, loud)
    for r in replicas:
        await eventually(lambda r=r: shows(fleet, r, quiet, "silenced", sid), 5, r.replica_id)

    leader = await fleet.wait_leader(5)
    leader.proc.send_signal(signal.SIGKILL)
    await exited(leader.proc)
    successor = await fleet.wait_leader(TTL_S + 5, exclude=[leader])
    # The successor judges (its repeats of the loud subject arrive); the silence holds.
    await eventually(
        lambda: [n for n in notes(receiver, loud) if n.monitor == successor.replica_id],
        10,
        "a repeat from the successor",
    )
    assert notes(receiver, quiet) == []
    assert await shows(fleet, successor, quiet, "silenced", sid)

    done = await cli(nats_server, unique, "silence", "rm", sid)
    assert done.returncode == 0 and f"ended silence {sid}" in done.stdout, done.stderr
    (entry,) = await listed(nats_server, unique, "--all")
    removed = ends_at(entry)  # ended, kept with its end (the floor needs it)
    assert removed <= time.time()
    note = await alerted(receiver, quiet)
    print(
        f"\n[silence rm] alert {note.at - removed:.2f}s after the end rm wrote (window {WINDOW_S}s)"
    )
    assert note.at - removed >= WINDOW_S - 0.05
    assert note.monitor == successor.replica_id
    assert await listed(nats_server, unique) == []


async def test_pause_until_resume_and_hostile_entries_change_nothing(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    prefix = names(unique)["prefix"]
    paused, loud = f"{prefix}svc.a", f"{prefix}svc.b"
    fleet = fleets(nats_server.url, unique, receiver)
    (replica,) = fleet.start(1)
    await fleet.wait_ready([replica])
    done = await cli(nats_server, unique, "pause", paused, "--reason", "moving it")
    assert done.returncode == 0 and done.stdout.startswith(f"paused {paused} (id "), done.stderr
    pid = done.stdout.split("(id ")[1].rstrip(")\n")
    again = await cli(nats_server, unique, "pause", paused)
    assert again.returncode == 0 and "already paused" in again.stdout, again.stdout

    # Junk written by hand next to the pause: logged, ignored, no crash.
    kv = await nc.jetstream().key_value(bucket(unique))
    for i, junk in enumerate([b"{nope", b'{"id":"x"}', b"[]", b'{"kind":"pause"}' * 100]):
        await kv.put(f"junk{i}", junk)
    await beat_once(nc, paused, loud)
    await alerted(receiver, loud)
    await eventually(lambda: shows(fleet, replica, paused, "paused", pid), 5, "PAUSED")
    assert notes(receiver, paused) == []
    assert replica.proc.running
    log = replica.proc.text()
    assert log.count("ignoring silence entry") == 1, log  # rate-limited
    (entry,) = await listed(nats_server, unique)
    assert entry["kind"] == "pause" and entry["ends"] is None

    done = await cli(nats_server, unique, "resume", paused)
    assert done.returncode == 0 and f"resumed {paused}" in done.stdout, done.stderr
    (entry,) = [e for e in await listed(nats_server, unique, "--all") if e["id"] == pid]
    resumed = ends_at(entry)
    note = await alerted(receiver, paused)
    print(f"\n[resume] alert {note.at - resumed:.2f}s after the end `resume` wrote")
    assert note.at - resumed >= WINDOW_S - 0.05
    again = await cli(nats_server, unique, "resume", paused)
    assert again.returncode == 1 and "is not paused" in again.stderr, again.stderr


# ----- CLI errors: one line, the right exit status ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["silence", "add", "a.b", "--reason", "r"], "exactly one of --for and --until"),
        (["silence", "add", "a.b", "--for", "0", "--reason", "r"], "greater than 0"),
        (["silence", "add", "a.b", "--for", "1h", "--until", "2999-01-01 00:00", "--reason", "r"],
         "exactly one"),
        (["silence", "add", "a.b", "--until", "2001-01-01T00:00:00Z", "--reason", "r"],
         "in the past"),
        (["silence", "add", "a.b", "--until", "soon", "--reason", "r"], "is not a time"),
        (["silence", "add", "a.b", "--for", "1h"], "--reason"),
        (["silence", "add", "a.b", "--for", "1h", "--reason", " "], "must not be empty"),
        (["silence", "add", "a..b", "--for", "1h", "--reason", "r"], "empty token"),
        (["silence", "add", "a.>.b", "--for", "1h", "--reason", "r"], "'>'"),
        (["silence", "add", "a.b", "--reason", "r", "--starts", "2999-01-02 00:00",
          "--until", "2999-01-01 00:00"], "after --starts"),
        (["pause"], "Missing argument"),
        (["resume", "a b"], "whitespace"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    nats_server: NatsServer, unique: str, args: list[str], needle: str
) -> None:
    done = run_cli(*args, "--nats-url", nats_server.url, "--silence-bucket", bucket(unique))
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert done.stdout == ""


def test_unknown_id_and_unreachable_server_exit_1(nats_server: NatsServer, unique: str) -> None:
    done = run_cli("silence", "rm", "0123456789ab", "--nats-url", nats_server.url,
                   "--silence-bucket", bucket(unique))  # fmt: skip
    assert done.returncode == 1 and "no silence or pause with id" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("silence", "ls", "--nats-url", "nats://127.0.0.1:1")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_an_alert_sent_before_a_silence_is_still_resolved_inside_it(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    subject = f"{names(unique)['prefix']}svc.flaky"
    fleet = fleets(nats_server.url, unique, receiver, repeat_every="0")
    (replica,) = fleet.start(1)
    await beat_once(nc, subject)
    first = await alerted(receiver, subject)
    sid = await add(nats_server, unique, subject, "--for", "1h", "--reason", "known")
    await eventually(lambda: shows(fleet, replica, subject, "silenced", sid), 5, "SILENCED")
    await beat_once(nc, subject)  # back, inside the silence: those told it was down are told
    got = await eventually(
        lambda: [n for n in notes(receiver, subject) if n.event == "resolved"], 10, "resolved"
    )
    assert got[0].alert_id == first.alert_id
    assert [n.event for n in notes(receiver, subject)] == ["alert", "resolved"]
