"""Fixtures: a session nats-server, server and cluster factories, unique names, receivers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from tests.harness import NatsCluster, NatsServer, Receiver, recording_receiver, start_cluster


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server shared by the session; tests use unique names on it."""
    server = NatsServer(tmp_path_factory.mktemp("nats") / "store").start()
    yield server
    server.stop()


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """Start private servers (for tests that kill or restart them)."""
    started: list[NatsServer] = []

    def make(**kwargs: Any) -> NatsServer:
        server = NatsServer(tmp_path / f"store{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[[], NatsCluster]]:
    clusters: list[NatsCluster] = []

    def make() -> NatsCluster:
        c = start_cluster(tmp_path / f"cluster{len(clusters)}")
        clusters.append(c)
        return c

    yield make
    for c in clusters:
        c.stop()


@pytest.fixture
def unique() -> str:
    """A short unique token for stream, bucket and subject names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with recording_receiver() as r:
        yield r
