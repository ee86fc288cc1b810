"""Where channels come from on the command line: ``--config`` and the channel flags.

``monitor``, ``notify-test`` and ``routes`` share these options.  The flags define
channels named ``pushover``, ``webhook:<hash of the URL>`` and ``log`` (as before the
config file existed); the file's ``[channels.NAME]`` come first; a name defined by
both is a start-up error.  A bad config exits 2 with one line naming the file, the
key and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from cli.common import check_http_url, fail, option, read_secret
from heartbeat.config import FLAGS, ChannelSpec, Config, ConfigError, load_config, merge_flags
from heartbeat.notify.pushover import PUSHOVER_URL
from heartbeat.notify.webhook import webhook_name

F = TypeVar("F", bound=Callable[..., Any])

_META = "channel_flags"


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    assert param.name is not None
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def _store_secret(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return str(_store(ctx, param, read_secret(ctx, param, value)))


def _store_url(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return _store(ctx, param, check_http_url(ctx, param, value))


def _opt(*decls: str, secret: bool = False, url: bool = False, **attrs: Any) -> Callable[[F], F]:
    attrs.setdefault("default", "")
    callback = _store_secret if secret else _store_url if url else _store
    return option(*decls, expose_value=False, callback=callback, **attrs)


def channel_options(f: F) -> F:
    """``--config`` and the flags that define the ``pushover``, ``webhook`` and ``log``
    channels.  Read them with :func:`load_channels`."""
    for decorator in reversed(
        [
            _opt(
                "--config",
                envvar="CONFIG",
                type=click.Path(dir_okay=False),
                help="TOML file of named channels and [[routes]] (see docs/notifiers.md).",
            ),
            _opt(
                "--pushover-user",
                envvar="PUSHOVER_USER",
                secret=True,
                help="Pushover user key (or a file named by PUSHOVER_USER_FILE).",
            ),
            _opt(
                "--pushover-token",
                envvar="PUSHOVER_TOKEN",
                secret=True,
                help="Pushover app token (or a file named by PUSHOVER_TOKEN_FILE).",
            ),
            _opt(
                "--pushover-url",
                envvar="PUSHOVER_URL",
                default=PUSHOVER_URL,
                show_default=True,
                url=True,
                help="Pushover messages endpoint.",
            ),
            _opt(
                "--webhook-url",
                envvar="WEBHOOK_URL",
                multiple=True,
                default=(),
                url=True,
                help="POST JSON notifications here (channel webhook:<hash>); repeatable "
                "(comma-separated in the env).",
            ),
            _opt(
                "--webhook-secret",
                envvar="WEBHOOK_SECRET",
                secret=True,
                help="Sign webhook bodies: X-Heartbeat-Signature: sha256=<HMAC> "
                "(or a file named by WEBHOOK_SECRET_FILE).",
            ),
            _opt(
                "--notify-log",
                envvar="NOTIFY_LOG",
                is_flag=True,
                default=False,
                help="Also write every notification as a log line (channel log).",
            ),
        ]
    ):
        f = decorator(f)
    return f


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated and comma-separated values, each once."""
    return tuple(dict.fromkeys(u.strip() for v in values for u in v.split(",") if u.strip()))


def flag_channels(flags: dict[str, Any]) -> list[ChannelSpec]:
    """The channels the flags define (usage errors exit 2)."""
    user, token = flags.get("pushover_user", ""), flags.get("pushover_token", "")
    if bool(user) != bool(token):
        missing = "--pushover-token (PUSHOVER_TOKEN)" if user else "--pushover-user (PUSHOVER_USER)"
        raise click.UsageError(f"Pushover needs both user and token: set {missing}")
    out: list[ChannelSpec] = []
    if user:
        options = {"user": user, "token": token, "url": flags.get("pushover_url") or PUSHOVER_URL}
        out.append(ChannelSpec("pushover", "pushover", options, FLAGS))
    secret = flags.get("webhook_secret", "")
    for url in _split(tuple(flags.get("webhook_url", ()))):
        if not url.startswith(("http://", "https://")):
            raise click.UsageError(f"--webhook-url {url!r} must be an http:// or https:// URL")
        options = {"url": url, **({"secret": secret} if secret else {})}
        out.append(ChannelSpec(webhook_name(url), "webhook", options, FLAGS))
    if flags.get("notify_log"):
        out.append(ChannelSpec("log", "log", {}, FLAGS))
    return out


def config_fail(e: ConfigError) -> NoReturn:
    fail(" ".join(str(e).split("\n")), 2)


def load_channels(ctx: click.Context | None = None) -> Config:
    """The merged config of this command's ``--config`` and channel flags."""
    ctx = ctx or click.get_current_context()
    flags: dict[str, Any] = dict(ctx.meta.get(_META, {}))
    extra = flag_channels(flags)
    path = flags.get("config") or ""
    try:
        if not path:
            return merge_flags(extra)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            fail(f"{path}: cannot read the config file: {e.strerror or e}", 2)
        except UnicodeDecodeError:
            fail(f"{path}: cannot read the config file: not UTF-8 text", 2)
        return load_config(text, path=path, read_file=_read_file, extra=extra)
    except ConfigError as e:
        config_fail(e)


def _read_file(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def describe(config: Config) -> str:
    """``name (type)`` of every channel, for messages."""
    return ", ".join(f"{c.name} ({c.type})" for c in config.channels) or "none"
