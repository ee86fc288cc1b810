"""``nats-heartbeat monitor``: the alerting service."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

import click
from nats.aio.client import Client as NATS

from cli.channels import channel_options, config_fail, describe, load_channels
from cli.common import (
    DURATION,
    POSITIVE_DURATION,
    check_host_port,
    check_name,
    connect_options,
    debug_option,
    fail,
    install_stop_signals,
    nats_options,
    option,
    run_to_end,
    secret_option,
    setup_logging,
    storage_options,
)
from cli.memory import trim_periodically
from heartbeat.aio import retry_until_stopped
from heartbeat.config import Config, ConfigError, build_notifiers, can_match_under, unreachable
from heartbeat.connection import close_connection, connect_with_retry
from heartbeat.engine import EngineConfig
from heartbeat.errors import HeartbeatError
from heartbeat.history import HistoryConfig, duplicate_window_for, overlaps
from heartbeat.maintenance import describe as describe_window
from heartbeat.monitor import Monitor, MonitorConfig
from heartbeat.notify import make_session
from heartbeat.schema import is_valid_subject
from heartbeat.status import make_app, serve
from heartbeat.store import ConfigConflict, StoreConfig

log = logging.getLogger("nats-heartbeat.monitor")


@click.command()
@nats_options
@option(
    "--subject-prefix",
    envvar="SUBJECT_PREFIX",
    default="heartbeat.",
    show_default=True,
    help="Monitor every subject under this prefix.",
)
@storage_options
@option(
    "--silence-bucket",
    envvar="SILENCE_BUCKET",
    default="HEARTBEAT_SILENCES",
    show_default=True,
    callback=check_name,
    help="KV bucket of silences and pauses (`nats-heartbeat silence`); created if missing.",
)
@option(
    "--replicas",
    envvar="REPLICAS",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Replication factor of the stream and bucket it creates (3 on a cluster).",
)
@option(
    "--poll",
    envvar="POLL_INTERVAL",
    type=POSITIVE_DURATION,
    default="1s",
    show_default=True,
    help="The longest wait between evaluations; the leader wakes sooner for a deadline "
    "(an alert is sent at its time) and when it wins the lease.",
)
@option(
    "--repeat-every",
    envvar="REPEAT_EVERY",
    type=DURATION,
    default="12h",
    show_default=True,
    help="Repeat an alert this often while the heartbeat stays missing (0: never).",
)
@option(
    "--tolerance",
    envvar="TOLERANCE",
    type=DURATION,
    default="1s",
    show_default=True,
    help="Extra silence past the window before alerting (absorbs delivery jitter; "
    "0s gives the Go monitor's exact rule).",
)
@option(
    "--checkpoint-every",
    envvar="CHECKPOINT_EVERY",
    type=POSITIVE_DURATION,
    default="60s",
    show_default=True,
    help="Write a healthy subject's last-seen to KV at most this often.",
)
@option(
    "--lease-ttl",
    envvar="LEASE_TTL",
    type=POSITIVE_DURATION,
    default="10s",
    show_default=True,
    help="Leader lease lifetime (whole seconds), renewed every ttl/3; a killed leader "
    "is replaced within about this long.",
)
@option(
    "--blind-after",
    envvar="BLIND_AFTER",
    type=POSITIVE_DURATION,
    default="30s",
    show_default=True,
    help="Send one 'blind' notice when the leader has been cut off from NATS this long "
    "(and 'sight_restored' when it sees again).",
)
@option(
    "--unhealthy-after",
    envvar="UNHEALTHY_AFTER",
    type=POSITIVE_DURATION,
    default="2m",
    show_default=True,
    help="Fail /healthz once the monitor has been unable to see NATS this long, so "
    "Kubernetes restarts it.",
)
@option(
    "--group-over",
    envvar="GROUP_OVER",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Storms: past this many notifications for one channel within --group-wait, the "
    "rest go out as one grouped notification (0: group from the first).",
)
@option(
    "--group-wait",
    envvar="GROUP_WAIT",
    type=POSITIVE_DURATION,
    default="2s",
    show_default=True,
    help="The window --group-over counts in, and the longest a notification waits for its group.",
)
@option(
    "--max-payload",
    envvar="MAX_PAYLOAD",
    type=click.IntRange(256, 1 << 20),
    default=8192,
    show_default=True,
    help="Reject heartbeats larger than this many bytes, unread (a Go agent's is ~150).",
)
@option(
    "--max-subjects",
    envvar="MAX_SUBJECTS",
    type=click.IntRange(1),
    default=1_000_000,
    show_default=True,
    help="Track at most this many subjects; beats of new ones past it are counted, logged "
    "and announced once, not monitored.",
)
@option(
    "--tap/--no-tap",
    envvar="TAP",
    default=True,
    show_default=True,
    help="Also subscribe to the heartbeat subjects directly, so a new subject is known as it "
    "is published; under a burst the stream's consumer is delivered later.  Decisions still "
    "wait for the stream's copy.  Needs subscribe permission on the prefix.",
)
@option(
    "--reconcile-every",
    envvar="RECONCILE_EVERY",
    type=DURATION,
    default="30s",
    show_default=True,
    help="How often the leader retires subjects purged from the stream by hand (0: never).",
)
@option(
    "--history-max-age",
    envvar="HISTORY_MAX_AGE",
    type=DURATION,
    default="720h",
    show_default=True,
    help="Keep history events (transitions, delivery outcomes) this long in the events "
    "stream (720h: 30 days; 0: no history).",
)
@option(
    "--history-stream",
    envvar="HISTORY_STREAM",
    default="HEARTBEAT_EVENTS",
    show_default=True,
    callback=check_name,
    help="JetStream stream of history events (the monitor creates it).",
)
@option(
    "--history-prefix",
    envvar="HISTORY_PREFIX",
    default="heartbeat_events",
    show_default=True,
    help="Subject prefix of history events: <prefix>.<subject>; must not overlap --subject-prefix.",
)
@option(
    "--status-addr",
    envvar="STATUS_ADDR",
    default="127.0.0.1:8080",
    show_default=True,
    callback=check_host_port,
    help="host:port for the status JSON, the status page (/ui), metrics and probes; "
    "empty disables.",
)
@secret_option(
    "--status-token",
    envvar="STATUS_TOKEN",
    help="Require 'Authorization: Bearer <token>' on the status listener (not the probes); "
    "the status page asks for it once and keeps a cookie",
)
@channel_options
@option(
    "--replica-id",
    envvar="REPLICA_ID",
    default="",
    help="This replica's name in logs, status and notifications  [default: host-pid]",
)
@option(
    "--log-format",
    envvar="LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format (json for Kubernetes).",
)
@debug_option
def monitor(
    nats_url: str,
    subject_prefix: str,
    stream: str,
    state_bucket: str,
    silence_bucket: str,
    replicas: int,
    poll: timedelta,
    repeat_every: timedelta,
    tolerance: timedelta,
    checkpoint_every: timedelta,
    lease_ttl: timedelta,
    blind_after: timedelta,
    unhealthy_after: timedelta,
    group_over: int,
    group_wait: timedelta,
    max_payload: int,
    max_subjects: int,
    tap: bool,
    reconcile_every: timedelta,
    history_max_age: timedelta,
    history_stream: str,
    history_prefix: str,
    status_addr: str,
    status_token: str,
    replica_id: str,
    log_format: str,
    debug: bool,
) -> None:
    """Watch every heartbeat under the prefix and notify when one stops.

    Alerts once the window (grace, or the interval when grace is unset) plus the
    tolerance passes without a beat, repeats every --repeat-every while missing,
    and sends a resolved notice when beats resume. State lives in the KV bucket,
    so restarts keep alerts and repeat timing.

    Channels come from --config (TOML: [channels.NAME] and [[routes]] that send
    subjects to them) and from the pushover, webhook and log flags; without
    [[routes]] every subject goes to every channel. Check a config with
    `nats-heartbeat routes --subject S` and `nats-heartbeat notify-test`.
    [[maintenance]] windows in the file keep their subjects quiet on a cron
    schedule; a subject still missing at a window's end alerts a full window later.
    [[depends]] in the file keeps dependents quiet while their parent is missing;
    the parent's alert and repeats count them.
    """
    channels = load_channels()
    if not channels.channels:
        raise click.UsageError(
            "no notifier configured: set --config (CONFIG) with [channels.NAME], "
            "--pushover-user and --pushover-token (PUSHOVER_USER/PUSHOVER_TOKEN), "
            "--webhook-url (WEBHOOK_URL) or --notify-log (NOTIFY_LOG=1)"
        )
    if status_token and not (status_token.isascii() and status_token.isprintable()):
        raise click.UsageError("--status-token must be printable ASCII (it is an HTTP header)")
    if replica_id and not (replica_id.isprintable() and len(replica_id) <= 128):
        raise click.UsageError("--replica-id must be printable and at most 128 characters")
    if not subject_prefix or "*" in subject_prefix or ">" in subject_prefix:
        raise click.UsageError(f"--subject-prefix {subject_prefix!r} must be a literal prefix")
    history = _history_config(
        history_max_age, history_stream, history_prefix, subject_prefix, lease_ttl, replicas
    )
    cfg = MonitorConfig(
        store=StoreConfig(
            stream=stream, bucket=state_bucket, subject_prefix=subject_prefix, replicas=replicas
        ),
        engine=EngineConfig(
            repeat_every_s=repeat_every.total_seconds(),
            tolerance_s=tolerance.total_seconds(),
            checkpoint_every_s=checkpoint_every.total_seconds(),
        ),
        poll_s=poll.total_seconds(),
        lease_ttl_s=lease_ttl.total_seconds(),
        blind_after_s=blind_after.total_seconds(),
        unhealthy_after_s=unhealthy_after.total_seconds(),
        group_over=group_over,
        group_wait_s=group_wait.total_seconds(),
        max_subjects=max_subjects,
        max_payload=max_payload,
        tap=tap,
        reconcile_every_s=reconcile_every.total_seconds(),
        silence_bucket=silence_bucket,
        routes=channels.routes,
        history=history,
        maintenance=channels.maintenance,
        depends=channels.depends,
        replica_id=replica_id or f"{socket.gethostname()}-{os.getpid()}",
    )
    setup_logging(debug, log_format)
    for window in channels.maintenance:
        log.info("maintenance window %s", describe_window(window))
    for i, dep in enumerate(channels.depends, 1):
        if not can_match_under(dep.on, subject_prefix):
            log.warning(
                "%s: depends[%d].on %r is not under --subject-prefix %r: never seen, it keeps "
                "nothing quiet",
                channels.path,
                i,
                dep.on,
                subject_prefix,
            )
    for key, pattern in unreachable(channels, subject_prefix):
        log.warning(
            "%s: %s %r matches no subject under --subject-prefix %r; it never applies",
            channels.path,
            key,
            pattern,
            subject_prefix,
        )
    raise SystemExit(run_to_end(_run(nats_url, cfg, channels, status_addr, status_token)))


def _history_config(
    max_age: timedelta,
    stream: str,
    prefix: str,
    subject_prefix: str,
    lease_ttl: timedelta,
    replicas: int,
) -> HistoryConfig | None:
    """The events stream's settings; None when --history-max-age is 0."""
    if max_age <= timedelta(0):
        return None
    if not is_valid_subject(prefix) or len(prefix) > 64:
        raise click.UsageError(
            f"--history-prefix {prefix[:80]!r} must be 1-64 characters of subject tokens "
            "(letters, digits, '_', '-', '/', '=' between dots; no wildcards)"
        )
    cfg = HistoryConfig(
        stream=stream,
        prefix=prefix,
        max_age_s=max_age.total_seconds(),
        duplicate_window_s=duplicate_window_for(lease_ttl.total_seconds(), max_age.total_seconds()),
        replicas=replicas,
    )
    heartbeats = StoreConfig(subject_prefix=subject_prefix).filter_subject
    if overlaps(cfg.filter_subject, heartbeats):
        raise click.UsageError(
            f"--history-prefix {prefix!r} overlaps --subject-prefix {subject_prefix!r}: the "
            "heartbeat stream would capture history events; choose another prefix"
        )
    return cfg


async def _start(mon: Monitor, nc: NATS, stop: asyncio.Event) -> bool:
    """Start ``mon``, retrying while JetStream is not ready; a bad configuration exits."""

    async def started() -> bool:
        await mon.start(nc)
        return True

    try:
        ok = await retry_until_stopped(
            started,
            stop,
            retry=lambda e: isinstance(e, HeartbeatError) and not isinstance(e, ConfigConflict),
            log=log,
            warning="cannot start yet (%s); retrying",
            recovered="started after retrying",
            max_backoff_s=10.0,
        )
    except ConfigConflict as e:
        fail(f"cannot start: {e}", 1)
    return ok is not None


async def _run(
    nats_url: str, cfg: MonitorConfig, channels: Config, status_addr: str, status_token: str
) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    async with make_session() as session:
        try:
            notifiers = build_notifiers(channels.channels, session)
        except ConfigError as e:
            config_fail(e)
        mon = Monitor(cfg, notifiers)
        options = connect_options(nats_url, f"monitor {cfg.replica_id}")

        async def reconnect() -> NATS | None:
            return await connect_with_retry(
                options, stop, on_disconnect=mon.on_disconnect, on_reconnect=mon.on_reconnect
            )

        try:
            nc = await reconnect()
        except HeartbeatError as e:
            fail(str(e), 1)
        if nc is None:
            return 0
        log.info("channels: %s", describe(channels))
        try:
            if not await _start(mon, nc, stop):
                return 0
            runner = None
            if status_addr:
                try:
                    app = make_app(
                        mon,
                        metrics=mon.metrics,
                        token=status_token,
                        history=mon.read_history if cfg.history is not None else None,
                    )
                    runner = await serve(app, status_addr)
                except OSError as e:
                    fail(f"cannot listen on {status_addr}: {e.strerror or e}", 1)
                log.info("status on http://%s/", status_addr)
            trimming = asyncio.create_task(trim_periodically(stop))
            try:
                await mon.run(stop, reconnect)
            finally:
                trimming.cancel()
                if runner is not None:
                    await runner.cleanup()
        finally:
            await close_connection(mon.connection or nc)
    log.info("monitor %s stopped", cfg.replica_id)
    return 0
