"""The Apprise channel (optional extra) delivering through its json:// service to a
real local receiver."""

from __future__ import annotations

import sys

import pytest

from heartbeat.notify import AppriseNotifier, EventKind, NotifyError
from heartbeat.notify.apprise import MISSING
from tests.harness import Receiver, free_port
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

# apprise imports the standard library's imghdr, deprecated since Python 3.11.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


def json_url(receiver: Receiver, path: str = "/apprise/hook") -> str:
    return receiver.url.replace("http://", "json://") + path


async def test_alert_resolved_and_group_are_delivered(receiver: Receiver) -> None:
    notifier = AppriseNotifier(name="apprise-ops", urls=[json_url(receiver)])
    assert notifier.name == "apprise-ops"
    # The receiver runs on this event loop: apprise's blocking call can only reach it
    # because the channel runs that call in a worker thread.
    await notifier.send(note())
    await notifier.send(note(EventKind.RESOLVED))
    await notifier.send(group())
    reqs = await receiver.wait_for(3)
    assert [r.path for r in reqs] == ["/apprise/hook"] * 3
    bodies = [r.json() for r in reqs]
    assert [(b["title"], b["message"], b["type"]) for b in bodies] == [
        (ALERT_TITLE, ALERT_TEXT, "failure"),
        (RESOLVED_TITLE, RESOLVED_TEXT, "success"),
        (GROUP_TITLE, GROUP_TEXT, "failure"),
    ]
    assert bodies[0]["version"] == "1.0"


async def test_a_failed_notify_is_retryable(receiver: Receiver) -> None:
    receiver.default_status = 500
    notifier = AppriseNotifier(name="apprise", urls=[json_url(receiver)])
    with pytest.raises(NotifyError) as info:
        await notifier.send(note())
    assert info.value.retryable
    assert len(receiver.accepted()) == 1


async def test_unreachable_service_is_retryable_and_url_not_shown() -> None:
    url = f"json://user:Sup3rSecretPw@127.0.0.1:{free_port()}/hook"
    notifier = AppriseNotifier(name="apprise", urls=[url])
    with pytest.raises(NotifyError) as info:
        await notifier.send(note())
    assert info.value.retryable
    assert "Sup3rSecretPw" not in str(info.value) and "Sup3rSecretPw" not in repr(notifier)


def test_unsupported_url_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ValueError, match=r"URL #2 of 2") as info:
        AppriseNotifier(name="apprise", urls=["json://127.0.0.1/", "nosuchscheme://t0ken@x"])
    assert "t0ken" not in str(info.value)
    with pytest.raises(ValueError, match="at least one"):
        AppriseNotifier(name="apprise", urls=[])


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # what an absent package looks like
    with pytest.raises(ImportError) as info:
        AppriseNotifier(name="apprise", urls=["json://127.0.0.1/"])
    assert str(info.value) == MISSING
    assert "nats-heartbeat[apprise]" in str(info.value)
