"""Every flag is checked before connecting: exit 2 with one line, never a traceback."""

from __future__ import annotations

import time

import pytest

from cli.common import host_port, shown_url, url_problem
from cli.main import main
from tests.harness import cli_env, free_port, run_cli

UNREACHABLE = f"nats://127.0.0.1:{free_port()}"  # nothing listens: a check that passed would hang
MONITOR = ["monitor", "--nats-url", UNREACHABLE, "--notify-log"]
AGENT = ["agent", "--nats-url", UNREACHABLE, "--subject", "heartbeat.x"]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert out == ""
    return int(e.value.code or 0), err


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        ([*MONITOR, "--status-addr", "127.0.0.1:99999"], ["--status-addr", "0 to 65535"]),
        ([*MONITOR, "--status-addr", "127.0.0.1:-1"], ["--status-addr", "0 to 65535"]),
        ([*MONITOR, "--status-addr", "127.0.0.1:http"], ["--status-addr"]),
        ([*MONITOR, "--status-addr", "8080"], ["--status-addr", "host:port"]),
        ([*MONITOR, "--status-addr", "bad host:8080"], ["--status-addr", "host"]),
        ([*MONITOR, "--status-addr", "::1:8080"], ["--status-addr", "brackets"]),
        ([*MONITOR, "--status-addr", "127.0.0.1:８０"], ["--status-addr"]),  # fullwidth digits
        ([*MONITOR, "--nats-url", "http://127.0.0.1:4222"], ["--nats-url", "nats://"]),
        ([*MONITOR, "--nats-url", "nats://127.0.0.1:4222,ftp://x"], ["--nats-url", "ftp://x"]),
        ([*MONITOR, "--nats-url", "nats://127.0.0.1:70000"], ["--nats-url", "port"]),
        ([*MONITOR, "--nats-url", "nats://"], ["--nats-url", "host"]),
        ([*MONITOR, "--nats-url", "nats://a b:4222"], ["--nats-url", "spaces"]),
        (
            [*MONITOR, "--nats-url", "tls://user:hunter2@:4222"],
            ["--nats-url", "***@"],
        ),
        ([*MONITOR, "--webhook-url", "ftp://example.com/hook"], ["--webhook-url", "http://"]),
        ([*MONITOR, "--webhook-url", "http://"], ["--webhook-url", "host"]),
        ([*MONITOR, "--webhook-url", "https://example.com:99999/h"], ["--webhook-url", "port"]),
        ([*MONITOR, "--pushover-url", "example.com/1/messages"], ["--pushover-url", "http"]),
        ([*MONITOR, "--stream", "HB.X"], ["--stream", "letters"]),
        ([*MONITOR, "--state-bucket", "a b"], ["--state-bucket", "letters"]),
        ([*MONITOR, "--status-token", "a\tb"], ["--status-token", "printable"]),
        ([*MONITOR, "--replica-id", "r\x1b[2J"], ["--replica-id", "printable"]),
        ([*MONITOR, "--subject-prefix", "heartbeat.>"], ["--subject-prefix"]),
        ([*MONITOR, "--poll", "-1s"], ["--poll"]),
        ([*AGENT, "--nats-url", "localhost:99999"], ["--nats-url", "port"]),
        ([*AGENT, "--interval", "soon"], ["--interval"]),
        (["retire", "--nats-url", "wss://", "heartbeat.x"], ["--nats-url", "host"]),
        (["retire", "--stream", "", "heartbeat.x"], ["--stream"]),
    ],
)
def test_bad_flag_exits_2_with_one_line(
    argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(argv, capsys)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nats-heartbeat: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "hunter2" not in err


def test_status_addr_out_of_range_fails_at_once_as_a_process() -> None:
    """The issue's case: before, it was accepted and crashed after connecting."""
    started = time.monotonic()
    done = run_cli(*MONITOR, "--status-addr", "127.0.0.1:99999", env=cli_env(), timeout=20)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "--status-addr" in done.stderr
    assert time.monotonic() - started < 10  # no connection attempt to the unreachable server


def test_env_values_are_checked_too(capsys: pytest.CaptureFixture[str]) -> None:
    done = run_cli("monitor", "--notify-log", env=cli_env(NATS_URL="http://x", STATUS_ADDR=":1"))
    assert done.returncode == 2 and "--nats-url" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":8080", ("", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:65535", ("::1", 65535)),
        ("monitor-0.monitor.svc.cluster.local:8080", ("monitor-0.monitor.svc.cluster.local", 8080)),
    ],
)
def test_good_host_ports(value: str, parsed: tuple[str, int]) -> None:
    assert host_port(value) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:4222",
        "tls://nats.example.com",
        "ws://[::1]:8080",
        "wss://user:pw@nats.example.com:443",
        "localhost:4222",  # bare host:port, as nats-py and the nats CLI take it
        "NATS://HOST",
    ],
)
def test_good_nats_urls(url: str) -> None:
    assert url_problem(url, ("nats", "tls", "ws", "wss"), default_scheme="nats") is None


def test_shown_url_hides_credentials() -> None:
    assert shown_url("nats://u:p@host:4222/x") == "nats://***@host:4222/x"
    assert shown_url("u:p@host") == "***@host"
    assert shown_url("https://host/path?token=abc") == "https://host/path?token=abc"
