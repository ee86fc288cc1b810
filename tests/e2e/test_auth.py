"""NATS authentication and TLS for every command that connects."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest
import trustme

from tests.harness import NatsServer, cli_binary, cli_env, free_port, run_cli

PASSWORD = "pw-Zq81xK"
TOKEN = "tok-93hHs2"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``run_cli`` with ``env`` added to the cleaned environment."""
    done: subprocess.CompletedProcess[str] = run_cli(
        *args, env=cli_env(**(env or {})), timeout=timeout
    )
    return done


def assert_one_line_failure(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_no_secrets(*outputs: str) -> None:
    for out in outputs:
        assert PASSWORD not in out
        assert TOKEN not in out


async def _make_stream(url: str, subject: str, **connect: object) -> None:
    nc = await nats.connect(url, **connect)  # type: ignore[arg-type]
    try:
        await nc.jetstream().add_stream(name="HB_AUTH", subjects=[subject])
    finally:
        await nc.close()


@pytest.fixture
def password_server(nats_factory: Callable[..., NatsServer]) -> NatsServer:
    return nats_factory(args=["--user", "agent", "--pass", PASSWORD])


async def test_user_password(password_server: NatsServer, tmp_path: Path) -> None:
    url = password_server.url
    await _make_stream(url, "hb.auth.>", user="agent", password=PASSWORD)
    beat = ["beat", "--nats-url", url, "--subject", "hb.auth.pw", "--interval", "1m"]
    ok = run(*beat, "--user", "agent", "--password", PASSWORD)
    assert ok.returncode == 0, ok.stderr
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    from_file = run(*beat, env={"NATS_USER": "agent", "NATS_PASSWORD_FILE": str(secret_file)})
    assert from_file.returncode == 0, from_file.stderr
    wrong = run(*beat, "--user", "agent", "--password", "nope-" + PASSWORD[::-1])
    assert_one_line_failure(wrong, "authorization violation")
    missing = run(*beat)
    assert_one_line_failure(missing, "authorization violation")
    in_url = run(
        *beat[:1], "--nats-url", url.replace("nats://", f"nats://agent:{PASSWORD}x@"), *beat[3:]
    )
    assert_one_line_failure(in_url, "authorization violation")
    unreadable = run(*beat, env={"NATS_USER": "agent", "NATS_PASSWORD_FILE": str(tmp_path / "no")})
    assert unreadable.returncode == 2
    assert "NATS_PASSWORD_FILE" in unreadable.stderr
    assert_no_secrets(ok.stdout, ok.stderr, from_file.stderr, wrong.stderr, in_url.stderr)


def test_monitor_and_agent_stop_on_wrong_credentials(password_server: NatsServer) -> None:
    url = password_server.url
    for args in (
        ["agent", "--subject", "hb.auth.agent", "--interval", "1s"],
        [
            "monitor",
            "--notify-log",
            "--subject-prefix",
            "hb.auth.",
            "--stream",
            "HB_AUTH_M",
            "--state-bucket",
            "HB_AUTH_M",
            "--status-addr",
            f"127.0.0.1:{free_port()}",
        ],
    ):
        done = run(*args, "--nats-url", url, "--user", "agent", "--password", "wrong", timeout=20)
        assert_one_line_failure(done, "authorization violation")


def agent_and_monitor_work(url: str, creds: list[str], env: dict[str, str]) -> str:
    """A monitor and an agent with these credentials connect; the monitor sees the agent.

    Returns their combined output (to check for secrets).
    """
    import json
    import time
    import urllib.request

    port = free_port()
    prefix = f"hb.sec{port}."
    monitor = subprocess.Popen(
        [cli_binary(), "monitor", "--nats-url", url, *creds, "--notify-log",
         "--subject-prefix", prefix, "--stream", f"HB_SEC{port}", "--state-bucket", f"HB_SEC{port}",
         "--status-addr", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(**env),
    )  # fmt: skip
    agent: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 30
        subjects: set[str] = set()
        while prefix + "agent" not in subjects:
            assert monitor.poll() is None, "monitor exited"
            assert agent is None or agent.poll() is None, "agent exited"
            assert time.monotonic() < deadline, "the monitor never saw the agent's beats"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    subjects = {row["subject"] for row in json.load(r)["subjects"]}
                if agent is None:  # the monitor is up (and made the stream): start the agent
                    agent = subprocess.Popen(
                        [cli_binary(), "agent", "--nats-url", url, *creds,
                         "--subject", prefix + "agent", "--interval", "200ms"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        env=cli_env(**env),
                    )  # fmt: skip
            except OSError:
                pass
            time.sleep(0.1)
    finally:
        outputs = []
        for proc in (agent, monitor):
            if proc is not None:
                proc.terminate()
                outputs.append(proc.communicate(timeout=15)[0])
                assert proc.returncode == 0, outputs[-1]
    return "".join(outputs)


def test_password_agent_and_monitor(password_server: NatsServer, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    out = agent_and_monitor_work(
        password_server.url, ["--user", "agent"], {"NATS_PASSWORD_FILE": str(secret)}
    )
    assert_no_secrets(out)


def test_token_agent_and_monitor(nats_factory: Callable[..., NatsServer]) -> None:
    server = nats_factory(args=["--auth", TOKEN])
    out = agent_and_monitor_work(server.url, [], {"NATS_TOKEN": TOKEN})
    assert_no_secrets(out)
    for cmd in (["agent", "--subject", "hb.tok.a"], ["monitor", "--notify-log",
                "--status-addr", f"127.0.0.1:{free_port()}"]):  # fmt: skip
        wrong = run(*cmd, "--nats-url", server.url, "--token", "nope", timeout=20)
        assert_one_line_failure(wrong, "authorization violation")


async def test_token(nats_factory: Callable[..., NatsServer]) -> None:
    server = nats_factory(args=["--auth", TOKEN])
    await _make_stream(server.url, "hb.tok.>", token=TOKEN)
    beat = ["beat", "--nats-url", server.url, "--subject", "hb.tok.one", "--interval", "1m"]
    ok = run(*beat, env={"NATS_TOKEN": TOKEN})
    assert ok.returncode == 0, ok.stderr
    wrong = run(*beat, "--token", "not-" + TOKEN[::-1])
    assert_one_line_failure(wrong, "authorization violation")
    assert_no_secrets(ok.stderr, wrong.stderr)


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[dict[str, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "other_ca": tmp_path / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    trustme.CA().cert_pem.write_to_path(str(paths["other_ca"]))
    yield {k: str(v) for k, v in paths.items()}


async def test_tls(nats_factory: Callable[..., NatsServer], tls_files: dict[str, str]) -> None:
    server = nats_factory(
        args=["--tls", "--tlscert", tls_files["cert"], "--tlskey", tls_files["key"]]
    )
    import ssl

    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    await _make_stream(server.url, "hb.tls.>", tls=ctx)
    beat = ["beat", "--nats-url", server.url, "--subject", "hb.tls.one", "--interval", "1m"]
    ok = run(*beat, "--tls-ca", tls_files["ca"])
    assert ok.returncode == 0, ok.stderr
    env_ok = run(*beat, env={"NATS_CA": tls_files["ca"]})
    assert env_ok.returncode == 0, env_ok.stderr
    untrusted = run(*beat, "--tls-ca", tls_files["other_ca"])
    assert_one_line_failure(untrusted, "not trusted")
    missing_file = run(*beat, "--tls-ca", tls_files["ca"] + ".missing")
    assert_one_line_failure(missing_file, "TLS")
    agent_and_monitor_work(server.url, ["--tls-ca", tls_files["ca"]], {})
    for cmd in (["agent", "--subject", "hb.tls.a"], ["monitor", "--notify-log",
                "--status-addr", f"127.0.0.1:{free_port()}"]):  # fmt: skip
        wrong = run(*cmd, "--nats-url", server.url, "--tls-ca", tls_files["other_ca"], timeout=20)
        assert_one_line_failure(wrong, "not trusted")
