"""``nats-heartbeat status`` as a subprocess against a real local HTTP server."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pty
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.harness import cli_binary, cli_env, free_port, run_cli

TOKEN = "s3cret-token"


def subject(name: str, **kw: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "subject": name,
        "description": name.removeprefix("heartbeat.").title(),
        "host": "vm",
        "last_seen": "2026-11-29T01:59:09.13597927Z",
        "interval": "1s",
        "allowed_window": "1s",
        "missing": False,
        "alert_active": False,
    }
    doc.update(kw)
    return doc


HEALTHY = {
    "observed_at": "2026-11-29T01:59:09.640824111Z",
    "subjects": [subject("heartbeat.smoke"), subject("heartbeat.api", host="api-1")],
}
FIRING = {
    "observed_at": "2026-11-29T01:59:12.640824111Z",
    "monitor": "m-2",
    "leader": False,
    "leader_id": "m-1",
    "subjects": [
        subject("heartbeat.smoke", missing=True, miss_for="3.5s", miss_count=3, alert_active=True),
        subject("heartbeat.api", missing=True, miss_for="1.2s", miss_count=1),
        subject("heartbeat.db", last_seen="2026-11-29T01:59:12Z"),
    ],
}
WRONG_SHAPE = {"observed_at": "2026-11-29T01:59:09Z", "subjects": [{"subject": "x"}]}


@dataclass
class StatusServer:
    url: str
    headers: list[dict[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


Answer = tuple[int, bytes, str]
JSON, TEXT = "application/json", "text/plain"
ROUTES: dict[str, Answer] = {
    "/healthy": (200, json.dumps(HEALTHY).encode(), JSON),
    "/firing": (200, json.dumps(FIRING).encode(), JSON),
    "/empty": (200, b'{"observed_at":"2026-11-29T01:59:09Z","subjects":[]}', JSON),
    "/error": (500, b"encode failed\n", TEXT),
    "/html": (200, b"<html><body>It works!</body></html>", "text/html"),
    "/wrong": (200, json.dumps(WRONG_SHAPE).encode(), JSON),
}


class Handler(BaseHTTPRequestHandler):
    state: ClassVar[StatusServer]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send(self, code: int, body: bytes, ctype: str = JSON) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.state.headers.append(dict(self.headers))
        if self.path in ROUTES:
            self.send(*ROUTES[self.path])
        elif self.path == "/auth":
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                self.send(*ROUTES["/healthy"])
            else:
                self.send(401, b"unauthorized", TEXT)
        elif self.path == "/moved":
            self.redirect("/auth")
        elif self.path == "/moved-away":  # another origin: same server, other host name
            port = self.state.url.rsplit(":", 1)[1]
            self.redirect(f"http://localhost:{port}/auth")
        elif self.path == "/drip":
            self.drip()
        else:
            self.send(404, b"not found", TEXT)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def drip(self) -> None:
        """Headers at once, then one byte every 100 ms: never idle long enough for
        a per-read timeout, so only a whole-request deadline stops it."""
        body = json.dumps(HEALTHY).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            for i in range(len(body)):
                if self.state.stop.wait(0.1):
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()


@pytest.fixture(scope="module")
def server() -> Iterator[StatusServer]:
    state = StatusServer(url="")
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = run_cli("status", *args, env=cli_env(**extra))
    return done


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nats-heartbeat: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_healthy_exits_0_with_the_table(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/healthy")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == (
        "Observed at: 2026-11-29T01:59:09Z\n"
        "\n"
        "STATUS  SUBJECT          DESCRIPTION  HOST   LAST SEEN             DETAILS\n"
        "OK      heartbeat.api    Api          api-1  2026-11-29T01:59:09Z  "
        "interval 1s, window 1s\n"
        "OK      heartbeat.smoke  Smoke        vm     2026-11-29T01:59:09Z  "
        "interval 1s, window 1s\n"
        "\n"
        "0 alert(s) firing across 2 subject(s)\n"
    )


def test_firing_exits_1_and_marks_alert_and_late(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/firing")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    assert "\x1b" not in proc.stdout  # not a terminal
    lines = proc.stdout.splitlines()
    assert lines[0] == "Observed at: 2026-11-29T01:59:12Z"
    assert lines[3] == (
        "LATE    heartbeat.api    Api          vm    2026-11-29T01:59:09Z  late by 1.2s (1 beats)"
    )
    assert lines[4].startswith("OK      heartbeat.db ")
    assert lines[5].endswith("  missed 3.5s (3 beats)")
    assert lines[5].startswith("ALERT!  heartbeat.smoke")
    assert lines[-1] == "1 alert(s) firing across 3 subject(s)"


def test_no_subjects_exits_0(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/empty")
    assert proc.returncode == 0
    assert proc.stdout == "Observed at: 2026-11-29T01:59:09Z\nNo heartbeats observed yet.\n"


def test_status_url_from_the_environment(server: StatusServer) -> None:
    proc = run(STATUS_URL=f"{server.url}/firing")
    assert proc.returncode == 1, proc.stderr
    assert "1 alert(s) firing across 3 subject(s)" in proc.stdout


def test_flag_beats_environment(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/healthy", STATUS_URL=f"{server.url}/firing")
    assert proc.returncode == 0, proc.stderr


def test_json_prints_the_answer_as_received_pretty(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/firing", "--json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout) == FIRING  # extra fields and nanoseconds kept
    assert proc.stdout.startswith('{\n  "observed_at": "2026-11-29T01:59:12.640824111Z",\n')
    assert "STATUS" not in proc.stdout
    healthy = run("--url", f"{server.url}/healthy", "--json")
    assert healthy.returncode == 0
    assert json.loads(healthy.stdout) == HEALTHY


def test_json_of_the_wrong_shape_is_still_refused(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/wrong", "--json")
    assert_one_line_error(proc, "/wrong", "status JSON", "description")


def test_connection_refused_exits_2() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    assert_one_line_error(run("--url", url), url, "connection refused")


def test_500_answer_exits_2(server: StatusServer) -> None:
    assert_one_line_error(run("--url", f"{server.url}/error"), "500", "encode failed")


def test_404_answer_exits_2(server: StatusServer) -> None:
    assert_one_line_error(run("--url", f"{server.url}/nowhere"), "404")


def test_non_json_answer_exits_2(server: StatusServer) -> None:
    assert_one_line_error(run("--url", f"{server.url}/html"), "/html", "status JSON")


def test_json_of_the_wrong_shape_exits_2(server: StatusServer) -> None:
    assert_one_line_error(run("--url", f"{server.url}/wrong"), "status JSON", "$.subjects[0]")


def test_silent_server_times_out_after_timeout(silent_port: int) -> None:
    started = time.monotonic()
    proc = run("--url", f"http://127.0.0.1:{silent_port}/", "--timeout", "200ms")
    elapsed = time.monotonic() - started
    assert_one_line_error(proc, "no answer", "within 200ms")
    assert elapsed < 2.5  # process start-up included; the default would be 3s


def test_timeout_from_the_environment(silent_port: int) -> None:
    started = time.monotonic()
    proc = run("--url", f"http://127.0.0.1:{silent_port}/", STATUS_TIMEOUT="300ms")
    assert_one_line_error(proc, "within 300ms")
    assert time.monotonic() - started < 2.5


def test_the_deadline_covers_a_slowly_dripping_body(server: StatusServer) -> None:
    started = time.monotonic()
    proc = run("--url", f"{server.url}/drip", "--timeout", "500ms")
    elapsed = time.monotonic() - started
    assert_one_line_error(proc, "within 500ms")
    assert elapsed < 3.0  # the whole body would take over 20 s


def test_bearer_token(server: StatusServer) -> None:
    assert_one_line_error(run("--url", f"{server.url}/auth"), "401")
    server.headers.clear()
    proc = run("--url", f"{server.url}/auth", "--token", TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert server.headers[-1]["Authorization"] == f"Bearer {TOKEN}"
    proc = run("--url", f"{server.url}/auth", STATUS_TOKEN=TOKEN)
    assert proc.returncode == 0, proc.stderr


def test_bearer_token_from_a_file(server: StatusServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server.headers.clear()
    proc = run("--url", f"{server.url}/auth", STATUS_TOKEN_FILE=str(token_file))
    assert proc.returncode == 0, proc.stderr
    assert server.headers[-1]["Authorization"] == f"Bearer {TOKEN}"


def test_no_token_no_authorization_header(server: StatusServer) -> None:
    server.headers.clear()
    assert run("--url", f"{server.url}/healthy").returncode == 0
    assert "Authorization" not in server.headers[-1]


def test_token_follows_a_same_origin_redirect_only(server: StatusServer) -> None:
    proc = run("--url", f"{server.url}/moved", "--token", TOKEN)
    assert proc.returncode == 0, proc.stderr
    server.headers.clear()
    proc = run("--url", f"{server.url}/moved-away", "--token", TOKEN)
    assert_one_line_error(proc, "401")
    assert [h.get("Host", "").split(":")[0] for h in server.headers] == ["127.0.0.1", "localhost"]
    assert "Authorization" not in server.headers[-1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--url", "ftp://example.com/"], "--url"),
        (["--url", "127.0.0.1:8080"], "--url"),
        (["--timeout", "0s"], "--timeout"),
        (["--timeout", "soon"], "--timeout"),
        (["--token", "bad\x01token"], "--token"),
    ],
)
def test_bad_flags_exit_2(args: list[str], needle: str) -> None:
    assert_one_line_error(run(*args), needle)


def test_help_shows_the_environment_mirrors() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in ("STATUS_URL", "STATUS_TIMEOUT", "STATUS_TOKEN", "http://127.0.0.1:8080/", "3s"):
        assert name in proc.stdout


def run_on_tty(*args: str, **extra: str) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal; return the exit status and what it printed."""
    master, replica = pty.openpty()
    try:
        proc = subprocess.Popen(
            [cli_binary(), "status", *args],
            stdout=replica,
            stderr=subprocess.DEVNULL,
            env=cli_env(TERM="xterm", **extra),
        )
    finally:
        os.close(replica)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError as e:  # EIO once the child has closed the terminal
                if e.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    code = proc.wait(30)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def test_colours_on_a_terminal(server: StatusServer) -> None:
    code, out = run_on_tty("--url", f"{server.url}/firing")
    assert code == 1
    assert "\x1b[31mALERT!\x1b[0m  heartbeat.smoke" in out
    assert "\x1b[33mLATE\x1b[0m    heartbeat.api" in out
    assert "\x1b[32mOK\x1b[0m      heartbeat.db" in out


def test_no_color_turns_colours_off_on_a_terminal(server: StatusServer) -> None:
    code, out = run_on_tty("--url", f"{server.url}/firing", NO_COLOR="1")
    assert code == 1
    assert "\x1b" not in out
    assert "ALERT!  heartbeat.smoke" in out
