"""Prometheus metrics, read from the monitor's own counters at scrape time.

Nothing on the per-heartbeat path touches the Prometheus client: the monitor
keeps plain counters and a :class:`TickTimer`; :class:`MonitorCollector` turns
them into metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from heartbeat.engine import Health, health, merged

if TYPE_CHECKING:
    from heartbeat.monitor import Monitor

P = "nats_heartbeat_"


class TickTimer:
    """A histogram of evaluation-tick durations, kept without the Prometheus client."""

    BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.total_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS, seconds)] += 1
        self.total_s += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.BOUNDS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield _counter("heartbeats_received", "Valid heartbeats ingested.", m.ingestor.accepted)
        invalid = CounterMetricFamily(
            P + "invalid_heartbeats", "Heartbeats rejected, by reason.", labels=["reason"]
        )
        for reason, n in sorted(m.ingestor.rejected.items()):
            invalid.add_metric([reason], n)
        yield invalid
        states = {h: 0 for h in Health}
        now = m.clock()
        for track in m.tracks.values():
            states[health(merged(track.record, track.beat, track.subject), now)] += 1
        subjects = GaugeMetricFamily(
            P + "subjects", "Monitored subjects by state.", labels=["state"]
        )
        for state, n in states.items():
            subjects.add_metric([str(state)], n)
        yield subjects
        yield from self._deliveries()
        yield _gauge("leader", "1 if this replica holds the lease.", 1.0 if m.leading() else 0.0)
        yield _counter(
            "lease_changes", "Times this replica acquired the lease.", m.election.changes
        )
        lag = m.ingestor.feed.last_pending
        yield _gauge(
            "consumer_lag",
            "Heartbeats the stream still has to deliver (last check).",
            float(lag) if lag is not None else float("nan"),
        )
        yield _gauge("ready", "1 when connected, caught up and not blind.", float(m.ready()[0]))
        yield _counter("kv_writes", "Compare-and-set writes to the state bucket.", m.kv_writes())
        yield _counter("cas_conflicts", "Lost compare-and-set races.", m.counters.conflicts)
        yield _counter(
            "ignored_records",
            "State bucket records ignored: their key is not a heartbeat subject.",
            m.counters.ignored_records,
        )
        t = m.tick_timer
        yield HistogramMetricFamily(
            P + "evaluation_seconds",
            "Duration of each evaluation tick.",
            buckets=t.buckets(),
            sum_value=t.total_s,
        )

    def _deliveries(self) -> Iterator[Metric]:
        d = self.m.deliveries
        sent = CounterMetricFamily(
            P + "notifications",
            "Delivery rounds by channel, kind and result.",
            labels=["channel", "kind", "result"],
        )
        retries = CounterMetricFamily(
            P + "notification_retries", "Retried delivery attempts by channel.", labels=["channel"]
        )
        if d is not None:
            for (channel, kind, result), n in sorted(d.results.items()):
                sent.add_metric([channel, kind, result], n)
            for channel, n in sorted(d.retries.items()):
                retries.add_metric([channel], n)
        yield sent
        yield retries


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, value=value)


def render(monitor: Monitor) -> bytes:
    """The Prometheus text exposition of ``monitor``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(monitor))
    return generate_latest(registry)
