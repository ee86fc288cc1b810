"""nats-heartbeat: publish heartbeats over NATS and monitor them with JetStream."""

from heartbeat.connection import ConnectOptions, connect, connect_with_retry
from heartbeat.durations import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)
from heartbeat.errors import (
    ConnectError,
    HeartbeatError,
    InvalidDuration,
    InvalidHeartbeat,
    InvalidSubject,
    NoStreamError,
    PublishError,
)
from heartbeat.jobs import Job, Run, job
from heartbeat.publisher import Beater, Publisher, beat_once, beat_once_async, beating
from heartbeat.schema import Message, decode, encode, validate, validate_subject

__all__ = [
    "Beater",
    "ConnectError",
    "ConnectOptions",
    "HeartbeatError",
    "InvalidDuration",
    "InvalidHeartbeat",
    "InvalidSubject",
    "Job",
    "Message",
    "NoStreamError",
    "PublishError",
    "Publisher",
    "Run",
    "beat_once",
    "beat_once_async",
    "beating",
    "connect",
    "connect_with_retry",
    "decode",
    "encode",
    "format_duration",
    "format_duration_ns",
    "job",
    "parse_duration",
    "parse_duration_ns",
    "validate",
    "validate_subject",
]
__version__ = "0.1.0"
