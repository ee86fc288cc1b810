"""The email channel against a real local SMTP server (aiosmtpd on a free loopback port)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from heartbeat.notify import EmailNotifier, EventKind, NotifyError, send_with_retry
from tests.harness import free_port
from tests.integration.test_channels import (
    ALERT_TEXT,
    ALERT_TITLE,
    GROUP_TEXT,
    GROUP_TITLE,
    RESOLVED_TEXT,
    RESOLVED_TITLE,
    group,
    note,
)

USER = "alerts@example.org"
PASSWORD = "sm7p-pa55word-very-secret"
SENDER = "nats-heartbeat <heartbeat@example.org>"
RCPTS = ["ops@example.org", "oncall@example.org"]


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it accepts and answers as told."""

    data_reply: str = "250 OK"
    rcpt_reply: str = ""
    refuse: frozenset[str] = frozenset()
    mails: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply.startswith("250"):
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return self.data_reply

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == PASSWORD.encode()
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # the server answers 535


@contextlib.contextmanager
def smtp_server(inbox: Inbox, *, auth: bool = True, **kwargs: Any) -> Iterator[int]:
    port = free_port()
    if auth:
        kwargs.update(authenticator=inbox.authenticate, auth_require_tls=False)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def plain(port: int, **kwargs: Any) -> EmailNotifier:
    args: dict[str, Any] = {
        "name": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "plain",
        "sender": SENDER,
        "recipients": RCPTS,
    }
    args.update(kwargs)
    return EmailNotifier(**args)


def body_text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


async def test_alert_and_resolved_mail() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        notifier = plain(port, username=USER, password=PASSWORD)
        await notifier.send(note())
        await notifier.send(note(EventKind.RESOLVED))
    assert inbox.logins == [USER, USER]
    [(sender, rcpts, alert), (_, _, resolved)] = inbox.mails
    assert sender == "heartbeat@example.org" and rcpts == RCPTS
    assert alert["Subject"] == ALERT_TITLE
    assert alert["From"] == SENDER
    assert alert["To"] == ", ".join(RCPTS)
    assert alert["Message-ID"] == "<a1b2c3-alert@nats-heartbeat>"
    assert alert["X-Heartbeat-Event"] == "alert"
    assert alert["Date"] == "Tue, 14 Nov 2023 22:16:32 +0000"
    text = body_text(alert)
    assert text.startswith(ALERT_TEXT + "\n\n")
    assert "subject: heartbeat.db.main\n" in text and "host: db-1\n" in text
    assert "last_seen: 2023-11-14T22:13:20Z\n" in text
    assert resolved["Subject"] == RESOLVED_TITLE
    assert resolved["Message-ID"] == "<a1b2c3-resolved@nats-heartbeat>"
    assert body_text(resolved).startswith(RESOLVED_TEXT + "\n\n")


async def test_group_is_one_mail() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        await plain(port).send(group())
    [(_, _, msg)] = inbox.mails
    assert msg["Subject"] == GROUP_TITLE
    assert body_text(msg) == GROUP_TEXT + "\n"


async def test_non_ascii_subject_is_encoded() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        await plain(port).send(note(description="Datenbank Köln"))
    [(_, _, msg)] = inbox.mails
    assert msg["Subject"] == "heartbeat.db.main (Datenbank Köln) is DOWN"


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("554 5.7.1 rejected as spam", False), ("451 4.3.0 try again later", True)],
)
async def test_data_reply_classification(reply: str, retryable: bool) -> None:
    inbox = Inbox(data_reply=reply)
    with smtp_server(inbox) as port, pytest.raises(NotifyError) as info:
        await plain(port).send(note())
    assert info.value.retryable is retryable
    assert info.value.status == int(reply[:3])
    assert str(info.value) == f"email: SMTP {reply[:3]}: {reply[4:]}"
    assert inbox.mails == []


@pytest.mark.parametrize(
    ("reply", "retryable"), [("550 5.1.1 no such user", False), ("450 4.2.1 mailbox busy", True)]
)
async def test_refused_recipients(reply: str, retryable: bool) -> None:
    inbox = Inbox(rcpt_reply=reply)
    with smtp_server(inbox) as port, pytest.raises(NotifyError) as info:
        await plain(port).send(note())
    assert info.value.retryable is retryable
    assert "all recipients refused" in str(info.value)


async def test_some_recipients_refused_is_delivered_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox(refuse=frozenset({RCPTS[0]}))
    with smtp_server(inbox) as port, caplog.at_level("WARNING", logger="heartbeat.notify.smtp"):
        await plain(port).send(note())
    [(_, rcpts, _msg)] = inbox.mails
    assert rcpts == RCPTS[1:]
    [record] = [r for r in caplog.records if r.name == "heartbeat.notify.smtp"]
    assert record.getMessage() == (
        "notify email: 1 of 2 recipients refused, id=a1b2c3-alert delivered to the rest"
    )


async def test_wrong_password_is_permanent_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox()
    wrong = "wr0ng-" + PASSWORD
    with smtp_server(inbox) as port:
        notifier = plain(port, username=USER, password=wrong)
        with pytest.raises(NotifyError) as info:
            await notifier.send(note())
        with caplog.at_level("DEBUG"):
            result = await send_with_retry(notifier, note(), deadline_s=1.0)
    assert not info.value.retryable and info.value.status == 535
    assert result.permanent and result.attempts == 1
    for text in (str(info.value), result.error, caplog.text, repr(notifier)):
        assert wrong not in text and PASSWORD not in text
    assert inbox.logins == [] and inbox.mails == []


async def test_no_server_is_retryable() -> None:
    with pytest.raises(NotifyError) as info:
        await plain(free_port(), timeout_s=2.0).send(note())
    assert info.value.retryable


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_starttls_with_login(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    inbox = Inbox()
    with smtp_server(inbox, tls_context=server_ctx, require_starttls=True) as port:
        notifier = plain(
            port, security="starttls", username=USER, password=PASSWORD, tls_context=client_ctx
        )
        await notifier.send(note())
        with pytest.raises(NotifyError) as info:
            await plain(port).send(note())  # plain against a server that demands STARTTLS
    assert [m[2]["Subject"] for m in inbox.mails] == [ALERT_TITLE]
    assert inbox.logins == [USER]
    assert not info.value.retryable and info.value.status == 530


async def test_implicit_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    inbox = Inbox()
    with smtp_server(inbox, ssl_context=server_ctx) as port:
        await plain(port, security="tls", tls_context=client_ctx).send(note())
        with pytest.raises(NotifyError) as info:
            await plain(port, security="tls").send(note())  # the test CA is not trusted
    assert [m[2]["Subject"] for m in inbox.mails] == [ALERT_TITLE]
    assert not info.value.retryable


async def test_what_the_server_cannot_do_is_permanent() -> None:
    inbox = Inbox()
    with smtp_server(inbox, auth=False) as port:
        with pytest.raises(NotifyError) as no_starttls:
            await plain(port, security="starttls").send(note())
        with pytest.raises(NotifyError) as no_auth:
            await plain(port, username=USER, password=PASSWORD).send(note())
        await plain(port).send(note())
    assert not no_starttls.value.retryable and "STARTTLS" in str(no_starttls.value)
    assert not no_auth.value.retryable and "AUTH" in str(no_auth.value)
    assert PASSWORD not in str(no_auth.value)
    assert len(inbox.mails) == 1


def test_email_config_is_checked() -> None:
    with pytest.raises(ValueError, match="security"):
        plain(25, security="ssl")
    with pytest.raises(ValueError, match="recipient"):
        plain(25, recipients=[])
    with pytest.raises(ValueError, match="both"):
        plain(25, username=USER)
    assert plain(0, security="tls")._port == 465
