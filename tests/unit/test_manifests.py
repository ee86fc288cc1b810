"""The deployment files in deploy/: Kubernetes schemas (offline), cross-references, the image.

Every YAML document under deploy/kubernetes is validated against the Kubernetes
OpenAPI schemas bundled with ``kubernetes-validate`` in strict mode (unknown fields
fail); kustomizations are checked for what they reference and, where ``kubectl``
is installed, built and validated as rendered.  The rest checks what no schema
can: probes on the right paths, labels that select each other, env names the CLI
reads, the Containerfile's user and install line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
BASE = KUBE / "base"
CONTAINERFILE = DEPLOY / "Containerfile"
NATS_VALUES = DEPLOY / "nats" / "values.yaml"
NATS_AUTH_VALUES = DEPLOY / "nats" / "values-auth.yaml"

# A Kubernetes version every kubernetes-validate release the test extra allows bundles.
K8S_VERSION = "1.33.0"
KUSTOMIZE_KINDS = {"Kustomization", "Component"}
NAME = "nats-heartbeat-monitor"
UID = 10001

# Settings the monitor will read once the work under way lands (NATS auth, the
# status token, <NAME>_FILE secrets); the manifests may already name them.
PENDING_ENV = {
    "NATS_CREDS",
    "NATS_NKEY",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CA",
    "NATS_CERT",
    "NATS_KEY",
    "STATUS_TOKEN",
    "PUSHOVER_USER_FILE",
    "PUSHOVER_TOKEN_FILE",
    "NATS_PASSWORD_FILE",
    "NATS_TOKEN_FILE",
    "WEBHOOK_SECRET_FILE",
    "STATUS_TOKEN_FILE",
}


# ----- loading --------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        assert isinstance(d, dict), f"{path}: a document is not a mapping"
    return docs


def resource_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object under deploy/kubernetes (kustomizations excluded)."""
    out = []
    for path in yaml_files():
        for i, doc in enumerate(load_docs(path)):
            if doc.get("kind") not in KUSTOMIZE_KINDS:
                out.append((f"{path.relative_to(KUBE)}#{i}", doc))
    return out


def kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


def one(path: Path, kind: str) -> dict[str, Any]:
    docs = [d for d in load_docs(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{path}: expected one {kind}, found {len(docs)}"
    return docs[0]


@cache
def deployment() -> dict[str, Any]:
    return one(BASE / "deployment.yaml", "Deployment")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = deployment()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = deployment()["spec"]["template"]["metadata"]["labels"]
    return labels


def env_entries() -> dict[str, dict[str, Any]]:
    entries = {e["name"]: e for e in container()["env"]}
    assert len(entries) == len(container()["env"]), "duplicate env names"
    return entries


def env_value(name: str) -> str:
    value = env_entries()[name].get("value")
    assert isinstance(value, str), f"{name} has no literal value"
    return value


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a matchLabels selector (or a Service's plain selector) select ``labels``?"""
    match = selector.get("matchLabels", selector)
    assert match and not selector.get("matchExpressions")
    return all(labels.get(k) == v for k, v in match.items())


def validate(doc: dict[str, Any], where: str) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(f"{where}: {doc['kind']} {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        pytest.fail(f"{where}: {e.message}")


# ----- every object against the Kubernetes schemas ------------------------------------------


def test_there_is_something_to_validate() -> None:
    kinds = {doc["kind"] for _, doc in resource_docs()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "Secret", "ServiceAccount"} <= kinds


@pytest.mark.parametrize(
    ("where", "doc"), [pytest.param(where, doc, id=where) for where, doc in resource_docs()]
)
def test_object_is_valid_kubernetes(where: str, doc: dict[str, Any]) -> None:
    validate(doc, where)


def test_strict_validation_rejects_unknown_fields() -> None:
    doc = yaml.safe_load((BASE / "deployment.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# ----- kustomizations ---------------------------------------------------------------------


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.relative_to(KUBE)))
def test_kustomization_references_exist(path: Path) -> None:
    k = one(path, path_kind(path))
    here = path.parent
    for ref in k.get("resources", []):
        target = here / ref
        assert target.is_file() or (target / "kustomization.yaml").is_file(), ref
        if target.is_file():
            for i, doc in enumerate(load_docs(target)):
                validate(doc, f"{target.relative_to(KUBE)}#{i}")
    for ref in k.get("components", []):
        assert (here / ref / "kustomization.yaml").is_file(), ref
    for patch in k.get("patches", []):
        assert "patch" in patch or (here / patch["path"]).is_file(), patch
        assert patch.get("target", {}).get("name") in (None, NAME), patch


def path_kind(path: Path) -> str:
    return str(load_docs(path)[0]["kind"])


def test_base_lists_everything_but_the_example_secret() -> None:
    k = one(BASE / "kustomization.yaml", "Kustomization")
    listed = set(k["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert "secret.example.yaml" not in listed
    assert listed == present - {"secret.example.yaml"}
    assert not any(d["kind"] == "Secret" for r in listed for d in load_docs(BASE / r))


def test_base_labels_select_the_pods() -> None:
    k = one(BASE / "kustomization.yaml", "Kustomization")
    selecting = [entry["pairs"] for entry in k["labels"] if entry.get("includeSelectors")]
    for pairs in selecting:
        for key, value in pairs.items():
            assert pod_labels().get(key) == value, key
    assert "app.kubernetes.io/name" in {key for pairs in selecting for key in pairs}


KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


@needs_kubectl
def test_base_builds_and_the_rendered_objects_are_valid() -> None:
    docs = kustomize_build(BASE)
    assert sorted(d["kind"] for d in docs) == [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    for d in docs:
        validate(d, f"kustomize build base: {d['kind']}")
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nats-heartbeat"
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].startswith("nats-heartbeat:")


COMPONENTS = sorted(p.parent.name for p in (KUBE / "components").glob("*/kustomization.yaml"))


def build_with_component(tmp_path: Path, component: str) -> dict[str, Any]:
    """``kustomize build`` of base + one component; every object validated; the Deployment."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    # kustomize refuses absolute paths; a relative one may climb out of the overlay.
    rel = os.path.relpath(KUBE, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/base]\ncomponents: [{rel}/components/{component}]\n"
    )
    docs = kustomize_build(overlay)
    for d in docs:
        validate(d, f"kustomize build base+{component}: {d['kind']}")
    return next(d for d in docs if d["kind"] == "Deployment")


def test_components_exist() -> None:
    assert {"nats-creds", "nats-user"} <= set(COMPONENTS)


@needs_kubectl
@pytest.mark.parametrize("component", COMPONENTS)
def test_component_mounts_every_file_it_names(tmp_path: Path, component: str) -> None:
    spec = build_with_component(tmp_path, component)["spec"]["template"]["spec"]
    c = spec["containers"][0]
    added = [e for e in c["env"] if e["name"] not in env_entries()]
    assert added, "the component adds no setting"
    assert {e["name"] for e in added} <= PENDING_ENV | cli_env_names()
    for e in added:
        if not e.get("value", "").startswith("/"):
            continue
        mount = next(m for m in c["volumeMounts"] if e["value"].startswith(m["mountPath"] + "/"))
        assert mount["readOnly"] is True
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        items = [i["path"] for i in volume["secret"]["items"]]
        assert os.path.relpath(e["value"], mount["mountPath"]) in items
        # Readable by the pod's fsGroup, not by the world.
        assert volume["secret"]["defaultMode"] & 0o007 == 0
    assert spec["securityContext"]["fsGroup"] == UID


def component_patch(component: str) -> list[dict[str, Any]]:
    k = one(KUBE / "components" / component / "kustomization.yaml", "Component")
    (patch,) = k["patches"]
    ops: list[dict[str, Any]] = yaml.safe_load(patch["patch"])
    return ops


def test_nats_user_component_matches_the_nats_users() -> None:
    """The monitor logs in as a user values-auth.yaml defines, with the password that
    user's NATS_... environment variable on the servers comes from."""
    ops = component_patch("nats-user")
    env = {o["value"]["name"]: o["value"].get("value") for o in ops if o["path"].endswith("/env/-")}
    (volume,) = [o["value"] for o in ops if o["path"].endswith("/volumes/-")]
    values = yaml.safe_load(NATS_AUTH_VALUES.read_text())
    users = {u["user"]: u for u in values["config"]["merge"]["authorization"]["users"]}
    user = users[env["NATS_USER"]]
    var = re.fullmatch(r"<< \$(\w+) >>", user["password"])
    assert var is not None
    server_ref = values["container"]["env"][var.group(1)]["valueFrom"]["secretKeyRef"]
    assert volume["secret"]["secretName"] == server_ref["name"]
    (item,) = volume["secret"]["items"]
    assert item["key"] == server_ref["key"]
    assert env["NATS_PASSWORD_FILE"].endswith("/" + item["path"])


# ----- the Deployment ---------------------------------------------------------------------


def test_deployment_shape() -> None:
    dep = deployment()
    assert dep["metadata"]["name"] == NAME
    assert dep["spec"]["replicas"] == 3
    assert selects(dep["spec"]["selector"], pod_labels())
    strategy = dep["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}
    assert 10 <= pod_spec()["terminationGracePeriodSeconds"] <= 60
    assert container()["args"] == ["monitor"]


def test_probes_use_the_named_port() -> None:
    c = container()
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["http"]["containerPort"] == 8080
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The status server listens where the probes knock, on every interface.
    host, _, port = env_value("STATUS_ADDR").rpartition(":")
    assert host == "0.0.0.0"
    assert int(port) == ports["http"]["containerPort"]


def test_runs_non_root_on_a_read_only_root() -> None:
    pod = pod_spec()["securityContext"]
    c = container()["securityContext"]
    assert pod["runAsNonRoot"] is True and c["runAsNonRoot"] is True
    assert pod["runAsUser"] == c["runAsUser"] == UID
    assert c["readOnlyRootFilesystem"] is True
    assert c["allowPrivilegeEscalation"] is False
    assert c["capabilities"]["drop"] == ["ALL"]
    assert not c["capabilities"].get("add")
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["seccompProfile"]["type"] == "RuntimeDefault"
    tmp = next(m for m in container()["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    assert pod_spec()["automountServiceAccountToken"] is False


def test_resources_have_requests_and_limits() -> None:
    res = container()["resources"]
    for kind in ("cpu", "memory"):
        assert kind in res["requests"] and kind in res["limits"]


def test_spread_across_nodes() -> None:
    constraints = {c["topologyKey"]: c for c in pod_spec()["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in constraints
    for c in constraints.values():
        assert selects(c["labelSelector"], pod_labels())
    anti = pod_spec()["affinity"]["podAntiAffinity"]
    terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        and selects(t["podAffinityTerm"]["labelSelector"], pod_labels())
        for t in terms
    )


def cli_env_names() -> set[str]:
    """Every environment variable ``nats-heartbeat monitor`` reads (click's ``envvar``)."""
    from cli.monitor import monitor as monitor_command

    names: set[str] = set()
    for param in monitor_command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    return names


def test_env_names_are_settings_of_the_monitor() -> None:
    known = cli_env_names()
    assert {"NATS_URL", "STATUS_ADDR", "REPLICA_ID", "LEASE_TTL"} <= known
    unknown = set(env_entries()) - known - PENDING_ENV
    assert not unknown, f"env the monitor does not read: {sorted(unknown)}"


def test_env_values() -> None:
    assert env_value("NATS_URL") == "nats://nats:4222"
    assert env_value("LOG_FORMAT") == "json"
    assert env_value("REPLICAS") == "3"
    assert env_value("LEASE_TTL") == "10s"
    replica_id = env_entries()["REPLICA_ID"]["valueFrom"]
    assert replica_id == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_secret_refs_match_the_example_secret() -> None:
    secret = one(BASE / "secret.example.yaml", "Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    refs = {
        name: e["valueFrom"]["secretKeyRef"]
        for name, e in env_entries().items()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert {"PUSHOVER_USER", "PUSHOVER_TOKEN"} <= set(refs)
    for name, ref in refs.items():
        assert ref["name"] == secret["metadata"]["name"], name
        if not ref.get("optional"):
            assert ref["key"] in keys, f"{name}: key {ref['key']!r} not in the example Secret"
    for value in secret["stringData"].values():
        assert "REPLACE-ME" in value


# ----- Service and PodDisruptionBudget ----------------------------------------------------


def test_service_exposes_http_and_metrics_on_the_named_port() -> None:
    svc = one(BASE / "service.yaml", "Service")
    assert svc["metadata"]["name"] == NAME
    assert svc["spec"]["type"] == "ClusterIP"
    assert selects(svc["spec"]["selector"], pod_labels())
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert set(ports) == {"http", "metrics"}
    assert ports["http"]["port"] == 8080
    container_ports = {p["name"] for p in container()["ports"]}
    for p in ports.values():
        assert p["targetPort"] in container_ports
    # The API server rejects two ports with the same (port, protocol): no schema says so.
    pairs = [(p["port"], p.get("protocol", "TCP")) for p in ports.values()]
    assert len(pairs) == len(set(pairs))


def test_pdb_keeps_two_of_the_deployments_pods() -> None:
    pdb = one(BASE / "pdb.yaml", "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["minAvailable"] < deployment()["spec"]["replicas"]
    assert selects(pdb["spec"]["selector"], pod_labels())
    assert pdb["spec"]["selector"]["matchLabels"] == deployment()["spec"]["selector"]["matchLabels"]


# ----- the Containerfile ------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_runs_as_a_numeric_non_root_user() -> None:
    users = [args for word, args in instructions() if word == "USER"]
    assert users, "no USER line"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert int(uid) == UID == container()["securityContext"]["runAsUser"]


def test_containerfile_installs_the_project_without_test_extras() -> None:
    text = CONTAINERFILE.read_text()
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), runs
    assert ".[test" not in text and "[test]" not in text


def test_containerfile_shape() -> None:
    ins = instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 2, "not multi-stage"
    defaults = dict(a.split("=", 1) for word, a in ins if word == "ARG" and "=" in a)
    images = {re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], f.split()[0]) for f in froms}
    assert images == {"python:3.11-slim"}
    assert ("ENTRYPOINT", '["nats-heartbeat"]') in ins
    assert ("CMD", '["monitor"]') in ins
    exposed = [args for word, args in ins if word == "EXPOSE"]
    assert exposed == [str(next(p["containerPort"] for p in container()["ports"]))]
    env = " ".join(args for word, args in ins if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # What it copies from the build context exists (build from the repository root).
    for word, args in ins:
        if word == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), src


def test_image_install_ships_every_package(tmp_path: Path) -> None:
    """The image installs the project non-editable: the wheel must hold every package."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("nats_heartbeat-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    present = {
        init.relative_to(ROOT).as_posix()
        for top in ("heartbeat", "cli")
        for init in (ROOT / top).rglob("*.py")
    }
    assert present <= shipped, f"missing from the wheel: {sorted(present - shipped)}"
    assert "heartbeat/py.typed" in shipped


# ----- NATS Helm values -------------------------------------------------------------------


def test_nats_values_describe_a_jetstream_cluster() -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    assert values["config"]["cluster"]["enabled"] is True
    assert values["config"]["cluster"]["replicas"] == 3 >= int(env_value("REPLICAS"))
    js = values["config"]["jetstream"]
    assert js["enabled"] is True
    assert js["fileStore"]["enabled"] is True and js["fileStore"]["pvc"]["size"]
    assert "kubernetes.io/hostname" in values["podTemplate"]["topologySpreadConstraints"]


def test_auth_values_name_the_manifests_stream_and_bucket() -> None:
    values = yaml.safe_load(NATS_AUTH_VALUES.read_text())
    users = {u["user"]: u for u in values["config"]["merge"]["authorization"]["users"]}
    monitor = users["heartbeat-monitor"]["permissions"]
    allowed = monitor["publish"]["allow"]
    stream, bucket = env_value("STREAM"), env_value("STATE_BUCKET")
    assert f"$JS.API.STREAM.INFO.{stream}" in allowed
    assert f"$KV.{bucket}.>" in allowed
    assert monitor["subscribe"]["allow"] == ["_INBOX.>", f"{env_value('SUBJECT_PREFIX')}>"]
    # Nothing account-wide for the monitor, and no agent may touch JetStream's API.
    assert not any(s in ("$JS.API.>", "$JS.>", ">", "$KV.>") for s in allowed)
    prefix = env_value("SUBJECT_PREFIX")
    for name, user in users.items():
        if name != "heartbeat-monitor":
            assert all(s.startswith(prefix) for s in user["permissions"]["publish"]["allow"])
    env = values["container"]["env"]
    for user in users.values():
        var = re.fullmatch(r"<< \$(\w+) >>", user["password"])
        assert var is not None and var.group(1) in env, user["user"]


def readme_authorization() -> str:
    text = (DEPLOY / "README.md").read_text()
    block = re.search(r"```\n(authorization \{.*?\n\})\n```", text, re.S)
    assert block is not None, "deploy/README.md lost its authorization block"
    return block.group(1)


def test_readme_permissions_are_the_values_permissions() -> None:
    """The nats.conf snippet in deploy/README.md says what values-auth.yaml configures."""
    values = yaml.safe_load(NATS_AUTH_VALUES.read_text())
    expected = {
        u["user"]: set(
            u["permissions"]["publish"]["allow"] + u["permissions"]["subscribe"]["allow"]
        )
        for u in values["config"]["merge"]["authorization"]["users"]
    }
    chunks = re.split(r"\buser: ([\w-]+)", readme_authorization())[1:]
    pairs = zip(chunks[::2], chunks[1::2], strict=True)
    documented = {user: set(re.findall(r'"([^"]+)"', chunk)) for user, chunk in pairs}
    assert documented == expected


def test_readme_permissions_are_valid_nats_server_config(tmp_path: Path) -> None:
    from tests.harness import nats_server_binary

    conf = tmp_path / "auth.conf"
    conf.write_text(f"listen: 127.0.0.1:4222\n{readme_authorization()}\n")
    passwords = re.findall(r"password: \$(\w+)", readme_authorization())
    assert len(passwords) == 3
    env = {**os.environ, **dict.fromkeys(passwords, "test-password")}
    out = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr + out.stdout
