"""Shared pieces of the command line: parameter types, NATS options, logging, signals."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from heartbeat.connection import DEFAULT_URL, Auth, ConnectOptions
from heartbeat.durations import parse_duration
from heartbeat.errors import InvalidDuration

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A Go duration (``15s``, ``1m30s``, ``200ms``) as a ``timedelta``."""

    name = "duration"

    def __init__(
        self, *, allow_zero: bool = True, allow_negative: bool = False, bare_seconds: bool = False
    ) -> None:
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative
        self.bare_seconds = bare_seconds  # "5" means 5s (status --watch 5)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        if self.bare_seconds and re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", str(value)):
            value = f"{value}s"
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


NATS_SCHEMES = ("nats", "tls", "ws", "wss")
HTTP_SCHEMES = ("http", "https")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")  # a JetStream stream or KV bucket name


def shown_url(url: str) -> str:
    """``url`` fit for an error message: any user and password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def url_problem(url: str, schemes: tuple[str, ...], *, default_scheme: str = "") -> str | None:
    """Why ``url`` is not a usable ``scheme://host[:port]`` URL, or None if it is.

    With ``default_scheme``, a bare ``host[:port]`` (as nats-py and the ``nats`` CLI
    accept) means ``<default_scheme>://host[:port]``.
    """
    listed = ", ".join(f"{s}://" for s in schemes)
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        return "must not be empty or contain spaces or control characters"
    target = url if "://" in url or not default_scheme else f"{default_scheme}://{url}"
    try:
        parts = urllib.parse.urlsplit(target)
        parts.port  # noqa: B018  (raises for a port that is not 0-65535)
    except ValueError:
        return "has an invalid port (it must be a number from 0 to 65535)"
    if parts.scheme.lower() not in schemes:
        return f"must start with {listed}"
    host = parts.hostname
    if not host or not host_is_valid(host):
        return "has no valid host"
    return None


def host_is_valid(host: str) -> bool:
    """A DNS name or an IPv4/IPv6 address (brackets around IPv6 allowed)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
        return True
    except ValueError:
        return bare == host and _HOSTNAME.fullmatch(host) is not None


def host_port(value: str) -> tuple[str, int]:
    """``host:port`` (host may be empty: all interfaces; ``[v6]:port`` for IPv6) as
    (host without brackets, port); ValueError saying what is wrong otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError("must be host:port (e.g. 127.0.0.1:8080, or :8080 for all interfaces)")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"has port {port!r}: it must be a number from 0 to 65535")
    if host and not host_is_valid(host):
        raise ValueError(f"has host {host!r}: it must be a name or an IP address")
    if host.startswith("["):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("needs brackets around an IPv6 address: [::1]:8080")
    return host, int(port)


def check_host_port(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Callback: ``value`` empty or a valid ``host:port``."""
    if value:
        try:
            host_port(value)
        except ValueError as e:
            raise click.BadParameter(f"{value!r} {e}", ctx, param) from e
    return value


def check_nats_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Callback: every comma-separated server is a nats://, tls://, ws:// or wss:// URL."""
    for url in ConnectOptions.split_servers(value or ""):
        problem = url_problem(url, NATS_SCHEMES, default_scheme="nats")
        if problem:
            raise click.BadParameter(f"{shown_url(url)!r} {problem}", ctx, param)
    return value


def check_http_url(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback: an http:// or https:// URL; for a repeatable option, each of the
    values and of their comma-separated parts."""
    if isinstance(value, tuple):
        urls = [u.strip() for v in value for u in v.split(",") if u.strip()]
    else:
        urls = [value]
    for url in urls:
        problem = url_problem(url, HTTP_SCHEMES)
        if problem:
            raise click.BadParameter(f"{shown_url(url)!r} {problem}", ctx, param)
    return value


def check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Callback: a stream or bucket name (letters, digits, ``_`` and ``-``)."""
    if not _NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r} must be 1-255 letters, digits, '_' or '-'", ctx, param)
    return value


def option(*param_decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that shows its environment mirror in ``--help``."""
    attrs.setdefault("show_envvar", "envvar" in attrs)
    return click.option(*param_decls, **attrs)


def read_secret(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A secret from its flag or env, else from the file named by ``<ENV>_FILE``.

    Kubernetes mounts secrets as files; ``PUSHOVER_TOKEN_FILE=/run/secrets/token``
    reads the token from there (trailing newline dropped).
    """
    if value:
        return value
    envvar = param.envvar if isinstance(param.envvar, str) else None
    path = os.environ.get(f"{envvar}_FILE", "") if envvar else ""
    if not path:
        return value
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as e:
        raise click.BadParameter(f"cannot read {envvar}_FILE ({path}): {e.strerror}") from e


def secret_option(*param_decls: str, envvar: str, help: str) -> Callable[[F], F]:
    """An option whose value may also come from ``<envvar>_FILE``; never shown."""
    return option(
        *param_decls,
        envvar=envvar,
        default="",
        callback=read_secret,
        help=f"{help} (or a file named by {envvar}_FILE).",
    )


def _store_auth(ctx: click.Context, param: click.Parameter, value: str) -> str:
    assert param.name is not None
    # --nats-token (status) is the token of the others: Auth's field either way.
    ctx.meta.setdefault("nats_auth", {})[param.name.removeprefix("nats_")] = value
    return value


def _auth_option(*decls: str, envvar: str, help: str, secret: bool = False) -> Callable[[F], F]:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
        return _store_auth(ctx, param, read_secret(ctx, param, value) if secret else value)

    return option(
        *decls, envvar=envvar, default="", expose_value=False, callback=callback, help=help
    )


def nats_options(f: F) -> F:
    """``--nats-url`` and the ``nats`` CLI's credential and TLS flags."""
    return nats_options_named()(f)


def nats_options_named(token: str = "--token") -> Callable[[F], F]:
    """:func:`nats_options`, with the NATS token flag named ``token`` (``status`` has a
    ``--token`` of its own, for the status listener)."""

    def apply(f: F) -> F:
        for decorator in reversed(
            [
                option(
                    "--nats-url",
                    envvar="NATS_URL",
                    default=DEFAULT_URL,
                    show_default=True,
                    callback=check_nats_url,
                    help="NATS server URL (nats://, tls://, ws:// or wss://); a comma-separated "
                    "list for a cluster.",
                ),
                _auth_option("--creds", envvar="NATS_CREDS", help="NATS credentials (JWT) file."),
                _auth_option("--nkey", envvar="NATS_NKEY", help="NATS nkey seed file."),
                _auth_option("--user", envvar="NATS_USER", help="NATS user name."),
                _auth_option(
                    "--password",
                    envvar="NATS_PASSWORD",
                    secret=True,
                    help="NATS password (or a file named by NATS_PASSWORD_FILE).",
                ),
                _auth_option(
                    token,
                    "nats_token",
                    envvar="NATS_TOKEN",
                    secret=True,
                    help="NATS token (or a file named by NATS_TOKEN_FILE).",
                ),
                _auth_option("--tls-ca", envvar="NATS_CA", help="CA certificate file to trust."),
                _auth_option("--tls-cert", envvar="NATS_CERT", help="Client certificate file."),
                _auth_option("--tls-key", envvar="NATS_KEY", help="Client private key file."),
            ]
        ):
            f = decorator(f)
        return f

    return apply


def storage_options(f: F) -> F:
    """``--stream`` (alias ``--prime-stream``) and ``--state-bucket``: where the monitor keeps
    the last beat per subject and the per-subject records."""
    f = option(
        "--state-bucket",
        envvar="STATE_BUCKET",
        default="HEARTBEAT_STATE",
        show_default=True,
        callback=check_name,
        help="KV bucket of per-subject alert records (the monitor creates it).",
    )(f)
    return option(
        "--stream",
        "--prime-stream",
        "stream",
        envvar=["STREAM", "PRIME_STREAM"],
        default="HEARTBEATS",
        show_default=True,
        callback=check_name,
        help="JetStream stream with the last beat per subject (the monitor creates it).",
    )(f)


def debug_option(f: F) -> F:
    return option(
        "--debug", envvar="DEBUG", is_flag=True, default=False, help="Log at debug level."
    )(f)


def connect_options(nats_url: str, name: str) -> ConnectOptions:
    """Connection settings from ``--nats-url`` and the credential flags of this command."""
    ctx = click.get_current_context(silent=True)
    given = dict(ctx.meta.get("nats_auth", {})) if ctx is not None else {}
    auth = Auth(**{k: v for k, v in given.items() if v})
    if auth.tls_key and not auth.tls_cert:
        raise click.UsageError("--tls-key (NATS_KEY) needs --tls-cert (NATS_CERT)")
    return ConnectOptions(servers=ConnectOptions.split_servers(nats_url), name=name, auth=auth)


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


def run_to_end(main: Coroutine[Any, Any, T], signals: Sequence[int] = STOP_SIGNALS) -> T:
    """``asyncio.run(main)``, ignoring ``signals`` that arrive once ``main`` is done.

    CPython closes the loop's self-pipe before it removes the loop's signal handlers,
    so a signal in between (the second of a Ctrl-C to the process group and a
    supervisor's SIGTERM, say) prints "Exception ignored ... Bad file descriptor".
    """
    with asyncio.Runner() as runner:
        try:
            return runner.run(main)
        finally:
            loop = runner.get_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` (a clean shutdown instead of a traceback)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    click.echo(f"nats-heartbeat: {message}", err=True)
    sys.exit(code)
