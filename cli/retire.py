"""``nats-heartbeat retire``: stop monitoring subjects whose services are gone."""

from __future__ import annotations

import asyncio
import contextlib

import click

from cli.common import (
    connect_options,
    debug_option,
    fail,
    nats_options,
    setup_logging,
    storage_options,
)
from heartbeat.connection import connect
from heartbeat.errors import HeartbeatError
from heartbeat.retire import retire as retire_subject
from heartbeat.schema import validate_subject
from heartbeat.store import StateStore, StoreConfig


@click.command()
@click.argument("subjects", nargs=-1, required=True)
@nats_options
@storage_options
@debug_option
def retire(
    subjects: tuple[str, ...], nats_url: str, stream: str, state_bucket: str, debug: bool
) -> None:
    """Retire SUBJECTS: purge their last beat from the stream and delete their records.

    A retired subject stops alerting at once (a pending alert is cancelled and
    logged). If its agent beats again, the subject comes back as new.
    """
    for subject in subjects:
        try:
            validate_subject(subject)
        except HeartbeatError as e:
            raise click.UsageError(str(e)) from e
    setup_logging(debug)
    cfg = StoreConfig(stream=stream, bucket=state_bucket)
    code = asyncio.run(_retire(nats_url, cfg, subjects))
    raise SystemExit(code)


async def _retire(nats_url: str, cfg: StoreConfig, subjects: tuple[str, ...]) -> int:
    try:
        nc = await connect(connect_options(nats_url, "retire"), reconnect_forever=False)
    except HeartbeatError as e:
        fail(str(e), 1)
    code = 0
    try:
        js = nc.jetstream()
        try:
            store = await StateStore.open(js, cfg, create=False)
        except HeartbeatError as e:
            fail(str(e), 1)
        for subject in subjects:
            try:
                had_beat, had_record = await retire_subject(js, store, subject)
            except HeartbeatError as e:
                click.echo(f"nats-heartbeat: {subject}: {e}", err=True)
                code = 1
                continue
            if had_beat or had_record:
                click.echo(f"retired {subject}")
            else:
                click.echo(f"{subject}: not monitored (nothing to retire)")
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return code
