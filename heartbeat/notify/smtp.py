"""Email over SMTP (aiosmtplib): one plain-text message per notification."""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from heartbeat.notify import words
from heartbeat.notify.base import EventKind, Notification, NotifyError
from heartbeat.notify.http import redact
from heartbeat.text import clip

logger = logging.getLogger(__name__)

SECURITY = {"starttls": 587, "tls": 465, "plain": 25}
_DETAIL_CHARS = 200
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class EmailNotifier:
    """Sends through one SMTP server to ``recipients``; the subject is the title.

    ``security``: ``starttls`` (port 587 by default), ``tls`` (implicit TLS, 465)
    or ``plain`` (25; tests and trusted relays only).  ``username``/``password``
    log in when given.  SMTP 4xx replies and connection trouble are retryable,
    5xx replies permanent; the password never appears in errors.
    """

    def __init__(
        self,
        *,
        name: str,
        host: str,
        sender: str,
        recipients: Sequence[str],
        port: int = 0,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout_s: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in SECURITY:
            raise ValueError(f"email security must be one of {sorted(SECURITY)}")
        if not host or not sender or not recipients:
            raise ValueError("email needs a host, a sender and at least one recipient")
        if bool(username) != bool(password):
            raise ValueError("email needs both a username and a password, or neither")
        self._name, self._sender, self._recipients = name, sender, tuple(recipients)
        self._password = password
        self._port = port or SECURITY[security]
        self._host = host
        self._smtp: dict[str, Any] = {
            "hostname": host,
            "port": self._port,
            "username": username or None,
            "password": password or None,
            "use_tls": security == "tls",
            "start_tls": security == "starttls",
            "timeout": timeout_s,
            "tls_context": tls_context,
        }

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"EmailNotifier(name={self._name!r}, host={self._host!r}, port={self._port})"

    def message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = ", ".join(self._recipients)
        msg["Subject"] = clip(words.title(n), 200)
        msg["Date"] = format_datetime(datetime.fromtimestamp(n.created_at, UTC))
        # The same on every retry, so a mail client can drop a duplicate.
        msg["Message-ID"] = f"<{_ID_UNSAFE.sub('_', n.notification_id)}@nats-heartbeat>"
        msg["X-Heartbeat-Event"] = str(n.event)
        text = words.message(n)
        if n.event is not EventKind.GROUP:
            facts = words.details(n)
            text += "\n\n" + "\n".join(f"{k}: {v}" for k, v in facts.items() if v not in (None, ""))
        msg.set_content(text + "\n")
        return msg

    async def send(self, notification: Notification) -> None:
        try:
            _errors, _reply = await aiosmtplib.send(self.message(notification), **self._smtp)
        except (aiosmtplib.SMTPException, OSError) as e:
            raise self._error(e) from e
        if _errors:  # some refused: resending would mail the others again
            logger.warning(
                "notify %s: %d of %d recipients refused, id=%s delivered to the rest",
                *(self._name, len(_errors), len(self._recipients), notification.notification_id),
            )

    def _error(self, exc: BaseException) -> NotifyError:
        text, retryable, status = _classify(exc)
        text = redact(" ".join(text.split()), (self._password,))[:_DETAIL_CHARS]
        return NotifyError(f"{self._name}: {text}", retryable=retryable, status=status)


def _classify(exc: BaseException) -> tuple[str, bool, int | None]:
    """(what went wrong, retryable, SMTP code): 4xx and connection trouble retryable,
    5xx permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = bool(codes) and all(code >= 500 for code in codes)
        text = f"all recipients refused (SMTP {', '.join(map(str, codes))})"
        return text, not permanent, codes[0] if codes else None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"SMTP {exc.code}: {exc.message}", not 500 <= exc.code < 600, exc.code
    # A bare SMTPException is what the server cannot do for us (no STARTTLS, no
    # AUTH): like a certificate that does not verify, retrying cannot help.
    unable = type(exc) is aiosmtplib.SMTPException
    if unable or isinstance(exc, aiosmtplib.SMTPNotSupported) or _bad_certificate(exc):
        return str(exc), False, None
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return "SMTP timed out", True, None
    return f"{type(exc).__name__}: {exc}", True, None


def _bad_certificate(exc: BaseException | None) -> bool:
    """A certificate that does not verify (aiosmtplib wraps it in a connect error)."""
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
