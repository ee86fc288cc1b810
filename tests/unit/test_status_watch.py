"""``status --watch`` frames, with fake frames and a fake sleep (no server, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import cli.status
from cli.status import CLEAR, FetchError, watch_frames
from heartbeat.status_schema import StatusReport, SubjectStatus, encode_status


def report(second: int, *, alert: bool = False) -> StatusReport:
    row = SubjectStatus(
        subject="heartbeat.api", description="API", host="h", last_seen=None,
        interval="1s", allowed_window="1s", missing=alert, alert_active=alert,
    )  # fmt: skip
    return StatusReport(
        observed_at=datetime(2026, 12, 1, 10, 0, second, tzinfo=UTC), subjects=[row]
    )


def frames(*reports: StatusReport | Exception):
    todo = list(reports)

    def frame() -> tuple[bytes, StatusReport]:
        got = todo.pop(0)
        if isinstance(got, Exception):
            raise got
        return encode_status(got), got

    return frame


def test_frames_follow_each_other_a_blank_line_apart(capsys: pytest.CaptureFixture[str]) -> None:
    naps: list[float] = []
    code = watch_frames(frames(report(1), report(2, alert=True)), 2.0, 2, as_json=False,
                        sleep=naps.append)  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1  # the last frame's: an alert fires
    first, second = out.split("\n\nObserved at: ")
    assert first.startswith("Observed at: 2026-12-01T10:00:01Z\n") and "OK" in first
    assert second.startswith("2026-12-01T10:00:02Z\n") and "ALERT!" in second
    assert CLEAR not in out and len(naps) == 1 and 0 <= naps[0] <= 2.0


def test_a_failed_frame_says_why_and_the_watch_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    code = watch_frames(frames(FetchError("no answer"), report(3)), 1.0, 2, as_json=False,
                        sleep=lambda s: None)  # fmt: skip
    got = capsys.readouterr()
    assert code == 0
    assert got.err == "nats-heartbeat: no answer\n"
    assert got.out.startswith("\nObserved at: 2026-12-01T10:00:03Z")


def test_ctrl_c_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    assert (
        watch_frames(frames(report(1, alert=True)), 1.0, 0, as_json=False, sleep=interrupted) == 0
    )
    assert capsys.readouterr().out.count("Observed at:") == 1


def test_on_a_terminal_each_frame_replaces_the_last(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.status, "_isatty", lambda stream: True)
    monkeypatch.setenv("NO_COLOR", "1")
    watch_frames(frames(report(1), report(2)), 1.0, 2, as_json=True, sleep=lambda s: None)
    out = capsys.readouterr().out
    assert out.count(CLEAR) == 2 and out.startswith(CLEAR + "{")
    assert '"observed_at": "2026-12-01T10:00:02Z"' in out.split(CLEAR)[2]
