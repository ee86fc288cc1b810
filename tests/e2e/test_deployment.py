"""deploy/ run on loopback: the Deployment's monitors against NATS as the Helm values set it up.

Three ``nats-heartbeat monitor`` processes get exactly the container's args and
environment from deploy/kubernetes/base/deployment.yaml (with the nats-user
component applied), resolved the way the kubelet would: literal values, the pod
name for the downward-API ``REPLICA_ID``, Secret keys (test values) for
``secretKeyRef`` and for files in secret volumes.  They run against a NATS
cluster built from deploy/nats/values.yaml (node count, JetStream) with the
users and permissions of deploy/nats/values-auth.yaml rendered as the chart
renders them.  Substituted, because a pod's network is not loopback's:
``NATS_URL`` (the cluster's client URLs), ``STATUS_ADDR`` (a free loopback port
each); added: ``PUSHOVER_URL`` (a recording receiver); shortened: ``LEASE_TTL``
(below).  Stream, bucket and prefix stay the manifest's: the cluster is private
to the test, and the NATS permissions name them.  Nothing is dropped: every
variable the manifest sets is one the monitor reads (tests/unit/test_manifests.py
checks the names), ``STATUS_TOKEN`` and the NATS user included.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
import pytest
import yaml

from tests.harness import (
    MonitorProcess,
    NatsServer,
    Receiver,
    cli_env,
    eventually,
    free_port,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
DEPLOYMENT = KUBE / "base" / "deployment.yaml"
NATS_USER_COMPONENT = KUBE / "components" / "nats-user" / "kustomization.yaml"
VALUES = ROOT / "deploy" / "nats" / "values.yaml"
AUTH_VALUES = ROOT / "deploy" / "nats" / "values-auth.yaml"

# The manifest's 10 s lets a 3-node cluster ride out a stream-leader change without a
# spurious takeover; no NATS node dies here, and 2 s keeps the failover wait short.
LEASE_TTL_S = 2
PUSHOVER_PATH = "/1/messages.json"
PUSHOVER_USER = "u-test-user-key"
PUSHOVER_TOKEN = "a-test-app-token"
STATUS_TOKEN = "s-test-status-token"


def fake_secrets() -> dict[str, dict[str, str]]:
    """What the Secrets the manifests name would hold (README: how to create them)."""
    return {
        "nats-heartbeat-monitor": {
            "pushover-user": PUSHOVER_USER,
            "pushover-token": PUSHOVER_TOKEN,
            "status-token": STATUS_TOKEN,
        },
        "nats-heartbeat-nats-users": {
            "monitor-password": secrets.token_hex(12),
            "agent-api-password": secrets.token_hex(12),
            "agent-batch-password": secrets.token_hex(12),
        },
    }


# ----- the manifests, resolved as Kubernetes would -------------------------------------------


def deployment_with_nats_user() -> dict[str, Any]:
    """The base Deployment with the nats-user component's JSON patch applied."""
    dep = yaml.safe_load(DEPLOYMENT.read_text())
    component = yaml.safe_load(NATS_USER_COMPONENT.read_text())
    (patch,) = component["patches"]
    assert patch["target"]["name"] == dep["metadata"]["name"]
    for op in yaml.safe_load(patch["patch"]):
        assert op["op"] == "add", op
        *parents, last = op["path"].split("/")[1:]
        target: Any = dep
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if last == "-":
            target.append(copy.deepcopy(op["value"]))
        else:
            target[last] = copy.deepcopy(op["value"])
    return dep


@dataclass
class Pod:
    name: str
    args: list[str]
    env: dict[str, str]
    port: int
    process: MonitorProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def resolve_container(
    dep: dict[str, Any], pod_name: str, store: dict[str, dict[str, str]], files: Path
) -> tuple[list[str], dict[str, str]]:
    """The container's args and environment as the kubelet would give them to the pod."""
    spec = dep["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts: dict[str, Path] = {}  # secret volume mount path -> local copy
    for m in container["volumeMounts"]:
        secret = volumes[m["name"]].get("secret")
        if secret is None:
            assert "emptyDir" in volumes[m["name"]], m  # /tmp: the process's own TMPDIR
            continue
        local = files / pod_name / m["name"]
        local.mkdir(parents=True)
        for item in secret["items"]:
            (local / item["path"]).write_text(store[secret["secretName"]][item["key"]] + "\n")
        mounts[m["mountPath"]] = local
    env: dict[str, str] = {}
    for e in container["env"]:
        name, source = e["name"], e.get("valueFrom")
        if source is None:
            value = e["value"]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", e
            value = pod_name
        else:
            ref = source["secretKeyRef"]
            found = store.get(ref["name"], {}).get(ref["key"])
            if found is None:
                assert ref.get("optional"), f"{name}: Secret key {ref} missing and not optional"
                continue  # Kubernetes leaves an optional, absent key unset
            value = found
        for mount, local in mounts.items():
            if value.startswith(mount + "/"):
                value = str(local / value[len(mount) + 1 :])
        env[name] = value
    return list(container["args"]), env


# ----- NATS as the Helm values describe it ---------------------------------------------------


def render_chart_config(config: dict[str, Any]) -> str:
    """nats.conf as the chart's ``nats.formatConfig`` writes it: JSON, ``"<< x >>"`` unquoted."""
    return re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", json.dumps(config, indent=2))


def start_nats(
    tmp_path: Path, store: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> list[NatsServer]:
    values = yaml.safe_load(VALUES.read_text())
    auth = yaml.safe_load(AUTH_VALUES.read_text())
    assert values["config"]["cluster"]["enabled"] and values["config"]["jetstream"]["enabled"]
    size = values["config"]["cluster"]["replicas"]
    client_ports = [free_port() for _ in range(size)]
    route_ports = [free_port() for _ in range(size)]
    nodes = []
    for i in range(size):
        config = {
            "server_name": f"nats-{i}",
            "listen": f"127.0.0.1:{client_ports[i]}",
            "jetstream": {"store_dir": str(tmp_path / f"nats-{i}")},
            "cluster": {
                "name": "nats",
                "listen": f"127.0.0.1:{route_ports[i]}",
                "routes": [f"nats://127.0.0.1:{p}" for p in route_ports],
            },
            **auth["config"]["merge"],
        }
        nodes.append(
            NatsServer(
                tmp_path / f"nats-{i}",
                port=client_ports[i],
                config=render_chart_config(config),
                name=f"nats-{i}",
            )
        )
    # The servers' environment, as the chart's container.env sets it from the Secret.
    with monkeypatch.context() as m:
        for var, spec in auth["container"]["env"].items():
            ref = spec["valueFrom"]["secretKeyRef"]
            m.setenv(var, store[ref["name"]][ref["key"]])
        threads = [threading.Thread(target=n.start) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(n.running for n in nodes), "a NATS node did not start"
    return nodes


async def wait_for_jetstream(urls: str, user: str, password: str) -> None:
    """NATS is installed and healthy before the monitors (README): a fresh cluster first
    elects its JetStream meta leader, and API requests made before that time out."""
    nc = await nats.connect(urls.split(","), user=user, password=password)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 30
        while True:
            try:
                await js.account_info()
                return
            except (nats.errors.Error, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def violations(nodes: list[NatsServer]) -> list[str]:
    return [line for n in nodes for line in n.log if "Violation" in line]


# ----- helpers ----------------------------------------------------------------------------------


async def http_get(
    session: aiohttp.ClientSession, url: str, token: str | None = None
) -> tuple[int, str]:
    """(status, body); (0, "") when nothing answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(url, headers=headers) as resp:
            return resp.status, await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0, ""


def pushover_alerts(receiver: Receiver, subject: str) -> list[dict[str, str]]:
    forms = [r.form() for r in receiver.requests if r.path == PUSHOVER_PATH]
    return [
        f
        for f in forms
        if f["title"].endswith(" is DOWN") and f["message"].startswith(f"{subject} ")
    ]


@dataclass
class Replicas:
    """The monitor pods of one Deployment, seen through their status listeners."""

    pods: list[Pod]
    session: aiohttp.ClientSession

    async def probes_ok(self, pod: Pod) -> bool:
        # Probes carry no token (the kubelet sends none); the status JSON needs it.
        health, _ = await http_get(self.session, pod.url + "/healthz")
        ready, _ = await http_get(self.session, pod.url + "/readyz")
        return health == 200 and ready == 200

    async def reports(self, among: list[Pod]) -> dict[str, dict[str, Any]]:
        out = {}
        for pod in among:
            status, body = await http_get(self.session, pod.url + "/", STATUS_TOKEN)
            if status == 200:
                out[pod.name] = json.loads(body)
        return out

    async def sole_leader(self, among: list[Pod]) -> str | None:
        """The one replica that leads, if every replica answers and agrees on it."""
        got = await self.reports(among)
        leading = [name for name, r in got.items() if r["leader"]]
        if len(got) != len(among) or len(leading) != 1:
            return None
        if any(r.get("leader_id") != leading[0] for r in got.values()):
            return None
        return leading[0]

    async def wait_ready(self, timeout: float) -> None:
        for pod in self.pods:
            try:
                await eventually(lambda p=pod: self.probes_ok(p), timeout, f"{pod.name} probes")
            except TimeoutError:
                pytest.fail(f"{pod.name} never became ready:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.process.text() if p.process else ''}" for p in self.pods
        )


def make_pods(
    dep: dict[str, Any],
    store: dict[str, dict[str, str]],
    urls: str,
    receiver: Receiver,
    tmp_path: Path,
) -> list[Pod]:
    pods = []
    for i in range(dep["spec"]["replicas"]):
        name = f"{dep['metadata']['name']}-7d4b9c5f6-{i}"  # what the downward API would give
        args, env = resolve_container(dep, name, store, tmp_path / "secrets")
        assert args[0] == "monitor", args
        overrides = {
            "NATS_URL": urls,
            "STATUS_ADDR": f"127.0.0.1:{free_port()}",
            "LEASE_TTL": f"{LEASE_TTL_S}s",
        }
        assert set(overrides) <= set(env), "the test overrides a setting the manifest lacks"
        env |= overrides | {"PUSHOVER_URL": receiver.url + PUSHOVER_PATH}
        assert env["REPLICA_ID"] == name and env["STATUS_TOKEN"] == STATUS_TOKEN
        port = int(env["STATUS_ADDR"].rpartition(":")[2])
        pods.append(Pod(name, args, cli_env(TMPDIR=str(tmp_path), **env), port))
    return pods


async def delivery_recorded(urls: str, password: str, bucket: str, subject: str) -> None:
    """Wait until the subject's alert is committed and no channel still owes it."""
    nc = await nats.connect(urls.split(","), user="heartbeat-monitor", password=password)
    try:
        kv = await nc.jetstream().key_value(bucket)

        async def recorded() -> bool:
            record = json.loads((await kv.get(subject)).value or b"{}")
            return bool(record.get("alert_active")) and not record.get("pending")

        await eventually(recorded, 10, f"the delivery for {subject} recorded")
    finally:
        await nc.close()


async def run_async(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = await asyncio.to_thread(run_cli, *args, env=env)
    return result


@pytest.fixture
def launched() -> Iterator[list[MonitorProcess]]:
    """Monitor processes a test started; whatever still runs is killed afterwards."""
    procs: list[MonitorProcess] = []
    yield procs
    for p in procs:
        if p.running:
            p.stop(signal.SIGKILL)


# ----- the test ---------------------------------------------------------------------------------


async def test_deployment_serves_probes_fails_over_and_alerts_once(
    tmp_path: Path,
    receiver: Receiver,
    launched: list[MonitorProcess],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    store = fake_secrets()
    users = store["nats-heartbeat-nats-users"]
    nodes = start_nats(tmp_path, store, monkeypatch)
    for node in nodes:
        request.addfinalizer(node.stop)
    urls = ",".join(n.url for n in nodes)
    await wait_for_jetstream(urls, "heartbeat-monitor", users["monitor-password"])
    dep = deployment_with_nats_user()
    pods = make_pods(dep, store, urls, receiver, tmp_path)
    for pod in pods:
        pod.process = MonitorProcess(pod.args[1:], tmp_path / f"{pod.name}.log", env=pod.env)
        launched.append(pod.process.start())
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        fleet = Replicas(pods, session)
        # Every replica is alive, then ready (connected, bucket mirrored, stream caught up);
        # the status JSON wants the token, and names the pod (REPLICA_ID).
        await fleet.wait_ready(45)
        assert (await http_get(session, pods[0].url + "/"))[0] == 401
        got = await fleet.reports(pods)
        assert {name: r["monitor"] for name, r in got.items()} == {p.name: p.name for p in pods}
        leader = await eventually(lambda: fleet.sole_leader(pods), 15, "exactly one leader")

        # Agents log in as their own users and may publish their own subjects only.
        api, batch = "heartbeat.service.api", "heartbeat.batch.nightly"
        api_env = cli_env(
            NATS_URL=urls,
            NATS_USER="heartbeat-agent-api",
            NATS_PASSWORD=users["agent-api-password"],
        )
        batch_env = cli_env(
            NATS_URL=urls,
            NATS_USER="heartbeat-agent-batch",
            NATS_PASSWORD=users["agent-batch-password"],
        )
        beat = await run_async("beat", "--subject", api, "--interval", "1s", env=api_env)
        assert beat.returncode == 0, beat.stderr

        # The api agent goes silent: one alert, sent to "Pushover" with the Secret's keys.
        # Meanwhile the same agent is refused a subject that is not its own.
        refused = asyncio.create_task(
            run_async("beat", "--subject", batch, "--interval", "1s", env=api_env)
        )
        await eventually(lambda: pushover_alerts(receiver, api), 15, "the api alert")
        assert (await refused).returncode == 1
        (alert,) = pushover_alerts(receiver, api)
        assert alert["user"] == PUSHOVER_USER and alert["token"] == PUSHOVER_TOKEN
        assert alert["priority"] == "1"
        # Killing the leader once the send is recorded tests a failover, not the
        # at-least-once window between sending and recording.
        bucket = pods[0].env["STATE_BUCKET"]
        await delivery_recorded(urls, users["monitor-password"], bucket, api)

        # The batch job beats once; its alert falls due after the leader is killed.
        beat = await run_async("beat", "--subject", batch, "--interval", "3s", env=batch_env)
        assert beat.returncode == 0, beat.stderr
        dead = next(p for p in pods if p.name == leader)
        assert dead.process is not None
        dead.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        survivors = [p for p in pods if p is not dead]
        successor = await eventually(
            lambda: fleet.sole_leader(survivors), LEASE_TTL_S + 5, "a new leader"
        )
        took = time.monotonic() - killed_at
        print(f"\nkill -9 {leader}: {successor} leads after {took:.2f}s (LEASE_TTL {LEASE_TTL_S}s)")
        assert took <= LEASE_TTL_S + 1, f"failover took {took:.2f}s\n{fleet.logs()}"

        await eventually(lambda: pushover_alerts(receiver, batch), 15, "the batch alert")
        # Several evaluation ticks of the new leader later, nothing was sent again.
        await asyncio.sleep(3)
        assert len(pushover_alerts(receiver, api)) == 1, fleet.logs()
        assert len(pushover_alerts(receiver, batch)) == 1, fleet.logs()
        assert len(receiver.requests) == 2, [r.form()["title"] for r in receiver.requests]
        for pod in survivors:
            assert await fleet.probes_ok(pod), pod.name

        # An operator retires a subject from inside a pod (kubectl exec ... nats-heartbeat
        # retire ...): the pod's own environment and NATS user are enough.
        retire = await run_async("retire", api, env=survivors[0].env)
        assert retire.returncode == 0, retire.stderr

    # SIGTERM (a rolling update): each survivor hands over and exits 0 within the grace period.
    grace_s = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    for pod in survivors:
        assert pod.process is not None
        code = await asyncio.to_thread(pod.process.stop, signal.SIGTERM, grace_s)
        assert code == 0, fleet.logs()
    assert len(receiver.requests) == 2

    # The permissions were enough for the monitors, the retire and each agent's own
    # subjects: the only refusal is the api agent's attempt on the batch subject.
    refused_lines = violations(nodes)
    assert refused_lines, "the refused publish left no trace in the server log"
    for line in refused_lines:
        assert "user:heartbeat-agent-api" in line and batch in line, line
