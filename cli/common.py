"""Shared pieces of the command line: parameter types, NATS options, logging, signals."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from heartbeat.connection import DEFAULT_URL, ConnectOptions
from heartbeat.durations import parse_duration
from heartbeat.errors import InvalidDuration

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A Go duration (``15s``, ``1m30s``, ``200ms``) as a ``timedelta``."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = True, allow_negative: bool = False) -> None:
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            d = parse_duration(str(value))
        except InvalidDuration as e:
            self.fail(f"{value!r} is not a duration (examples: 15s, 1m30s, 200ms)", param, ctx)
            raise AssertionError from e  # unreachable: fail() raises
        if d < timedelta(0) and not self.allow_negative:
            self.fail(f"{value!r} must not be negative", param, ctx)
        if d == timedelta(0) and not self.allow_zero:
            self.fail(f"{value!r} must be greater than 0", param, ctx)
        return d


DURATION = DurationType()
POSITIVE_DURATION = DurationType(allow_zero=False)


def option(*param_decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that shows its environment mirror in ``--help``."""
    attrs.setdefault("show_envvar", "envvar" in attrs)
    return click.option(*param_decls, **attrs)


def nats_options(f: F) -> F:
    """``--nats-url`` (``NATS_URL``): one URL or a comma-separated list."""
    return option(
        "--nats-url",
        envvar="NATS_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="NATS server URL; a comma-separated list for a cluster.",
    )(f)


def debug_option(f: F) -> F:
    return option(
        "--debug", envvar="DEBUG", is_flag=True, default=False, help="Log at debug level."
    )(f)


def connect_options(nats_url: str, name: str) -> ConnectOptions:
    return ConnectOptions(servers=ConnectOptions.split_servers(nats_url), name=name)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(debug: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # nats-py logs every failed reconnect attempt with a traceback; we log outages ourselves.
    logging.getLogger("nats").setLevel(logging.CRITICAL if not debug else logging.DEBUG)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` (a clean shutdown instead of a traceback)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit with ``code``."""
    click.echo(f"nats-heartbeat: {message}", err=True)
    sys.exit(code)
