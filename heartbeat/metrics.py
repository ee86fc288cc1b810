"""Prometheus metrics, from one snapshot of the monitor's counters at scrape time.

Nothing on the per-heartbeat path touches the Prometheus client: the monitor
keeps plain counters and a :class:`TickTimer`, and builds a :class:`Snapshot` when
``/metrics`` is scraped; :func:`render` turns it into the text exposition.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from heartbeat.engine import Health
from heartbeat.quiet import QuietKind

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


@dataclass(frozen=True)
class Snapshot:
    """Every figure /metrics shows, read at one moment."""

    heartbeats: int
    rejected: Mapping[str, int]  # reason -> count
    subjects: Mapping[Health, int]
    deliveries: Mapping[tuple[str, str, str], int]  # (channel, kind, result) -> count
    retries: Mapping[str, int]  # channel -> retried attempts
    leader: bool
    lease_changes: int
    consumer_lag: int | None
    ready: bool
    kv_writes: int
    conflicts: int
    write_errors: int
    ignored_records: int
    refused_subjects: int
    held_alerts: int
    unrouted: int  # subjects no route sends anywhere
    pending: Mapping[str, int]  # channel -> notifications it still owes
    tick_buckets: tuple[tuple[str, float], ...]  # cumulative, as Prometheus wants them
    tick_total_s: float
    history_events: Mapping[str, int] = field(default_factory=dict)  # kind -> events written
    history_errors: int = 0  # events given up (publish failed, or the queue was full)
    quiet: Mapping[QuietKind, int] = field(default_factory=dict)  # subjects quiet now, by kind
    tracked: int = 0  # subjects known now (the by-state counts may be a second or so old)
    tapped: int = 0  # new subjects known from the tap before their stream copy


class _Collector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.s = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.s
        yield _counter("heartbeats_received", "Valid heartbeats ingested.", s.heartbeats)
        yield _labelled(
            CounterMetricFamily,
            "invalid_heartbeats",
            "Heartbeats rejected, by reason.",
            ["reason"],
            (((reason,), n) for reason, n in s.rejected.items()),
        )
        yield _labelled(
            GaugeMetricFamily,
            "subjects",
            "Monitored subjects by state.",
            ["state"],
            (((str(h),), s.subjects.get(h, 0)) for h in Health),
            sort=False,
        )
        yield _gauge(
            "tracked_subjects",
            "Subjects this replica knows, now (the state counts are from the last count, "
            "at most a few seconds old at a million subjects).",
            s.tracked,
        )
        yield _counter(
            "tapped_subjects",
            "New subjects known from the core subscription (--tap) before the stream "
            "delivered their first beat.",
            s.tapped,
        )
        yield _labelled(
            GaugeMetricFamily,
            "quiet_subjects",
            "Subjects kept quiet now (no alert or repeat sent), by why: paused, silenced, "
            "maint or suppressed.",
            ["kind"],
            (((str(k),), s.quiet.get(k, 0)) for k in QuietKind),
            sort=False,
        )
        yield _labelled(
            CounterMetricFamily,
            "notifications",
            "Delivery rounds by channel, kind and result.",
            ["channel", "kind", "result"],
            s.deliveries.items(),
        )
        yield _labelled(
            CounterMetricFamily,
            "notification_retries",
            "Retried delivery attempts by channel.",
            ["channel"],
            (((channel,), n) for channel, n in s.retries.items()),
        )
        yield _gauge("leader", "1 if this replica holds the lease.", float(s.leader))
        yield _counter("lease_changes", "Times this replica acquired the lease.", s.lease_changes)
        yield _gauge(
            "consumer_lag",
            "Heartbeats the stream still has to deliver (last check).",
            float(s.consumer_lag) if s.consumer_lag is not None else float("nan"),
        )
        yield _gauge("ready", "1 when connected, caught up and not blind.", float(s.ready))
        yield _counter("kv_writes", "Compare-and-set writes to the state bucket.", s.kv_writes)
        yield _counter("cas_conflicts", "Lost compare-and-set races.", s.conflicts)
        yield _counter(
            "state_write_errors",
            "State bucket writes that failed (not lost races); each is retried with backoff.",
            s.write_errors,
        )
        yield _counter(
            "ignored_records",
            "State bucket records ignored: their key is not a heartbeat subject.",
            s.ignored_records,
        )
        yield _gauge("unrouted_subjects", "Subjects that no route sends anywhere.", s.unrouted)
        yield _labelled(
            GaugeMetricFamily,
            "pending_notifications",
            "Committed notifications a channel still owes (groups count once).",
            ["channel"],
            (((channel,), n) for channel, n in s.pending.items()),
        )
        yield _counter(
            "held_alerts",
            "Alerts decided but held for a tick: the heartbeat consumer was behind the stream.",
            s.held_alerts,
        )
        yield _counter(
            "refused_subjects",
            "Beats of new subjects refused: the monitor already tracks --max-subjects.",
            s.refused_subjects,
        )
        yield _labelled(
            CounterMetricFamily,
            "history_events",
            "History events written to the events stream, by kind.",
            ["kind"],
            (((kind,), n) for kind, n in s.history_events.items()),
        )
        yield _counter(
            "history_errors",
            "History events given up: publishing failed, or the queue was full.",
            s.history_errors,
        )
        yield HistogramMetricFamily(
            P + "evaluation_seconds",
            "Duration of each evaluation tick.",
            buckets=list(s.tick_buckets),
            sum_value=s.tick_total_s,
        )


def _labelled(
    family: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    labels: list[str],
    values: Iterable[tuple[tuple[str, ...], int]],
    *,
    sort: bool = True,
) -> Metric:
    metric = family(P + name, doc, labels=labels)
    for key, n in sorted(values) if sort else values:
        metric.add_metric(list(key), n)
    return metric


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, value=value)


def render(snapshot: Snapshot) -> bytes:
    """The Prometheus text exposition of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    return generate_latest(registry)
