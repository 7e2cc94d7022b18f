"""cluster/: the launcher configs, the KubeRay manifests and the shared runtime environment.

Schema-level checks need no cluster: Ray's own JSON schema for the launcher configs, the
required fields of the KubeRay kinds, images and Ray versions against pyproject.toml, and
entry points that exist in the repository. One test then does what the README tells an
operator to do: a real ``ray start --head`` (loopback, own ports, own temp dir, token auth)
and ``ray job submit --working-dir .`` of ``jobs/pipeline.py`` over a small synthetic fleet,
into the test database. It stops only the Ray processes it started.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT, query

CLUSTER = ROOT / "cluster"
K8S = CLUSTER / "k8s"
RAY_BIN = Path(sys.executable).parent / "ray"
REMOTE_URI = re.compile(r"^(https|s3|gs|az|abfss)://\S+\.zip$")


def _pyproject_deps() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def ray_version() -> str:
    """The Ray pin of pyproject.toml: ``ray[...]==X.Y.Z`` → ``X.Y.Z``."""
    pins = [d for d in _pyproject_deps() if re.match(r"ray(\[|=)", d)]
    assert len(pins) == 1, pins
    m = re.fullmatch(r"ray(\[[\w,]+\])?==(\d+\.\d+\.\d+)", pins[0])
    assert m, f"Ray must be pinned exactly in pyproject.toml, got {pins[0]}"
    return m.group(2)


def image() -> str:
    return f"rayproject/ray:{ray_version()}-py311"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def manifests() -> dict[str, dict]:
    """Every Kubernetes document under cluster/k8s, by kind."""
    out: dict[str, dict] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] not in out, f"two {doc['kind']} documents"
                out[doc["kind"]] = doc
    return out


def shared_runtime_env() -> dict:
    return load(CLUSTER / "runtime_env.yaml")


# --------------------------------------------------------------------------- versions, runtime env


def test_installed_ray_is_the_pinned_one():
    import ray

    assert ray.__version__ == ray_version()


def test_runtime_env_is_valid_for_ray_and_carries_no_secret():
    from ray.runtime_env import RuntimeEnv

    env = shared_runtime_env()
    RuntimeEnv(**env)  # Ray's own validation of every field
    assert env["working_dir"] == "."
    assert {".git", ".venv", "out/"} <= set(env["excludes"])
    assert env["env_vars"]["LOGALYZER_DSN"] == "${LOGALYZER_DSN}", "the DSN comes from the node"
    assert all(isinstance(v, str) for v in env["env_vars"].values()), "Ray wants strings"


def test_runtime_env_pip_is_pyproject_minus_ray_and_the_embedded_database():
    wanted = sorted(d for d in _pyproject_deps() if not re.match(r"(ray|pgserver)\b", d))
    assert sorted(shared_runtime_env()["pip"]["packages"]) == wanted


def test_no_credentials_in_cluster_files():
    """DSNs with a password appear only as the obvious placeholder of the example Secret."""
    for path in CLUSTER.rglob("*.yaml"):
        for m in re.finditer(r"postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+:([^@\s]+)@", path.read_text()):
            assert m.group(1) in ("CHANGE-ME", "..."), f"{path.name} holds a password"
        assert not re.search(r"RAY_AUTH_TOKEN\s*[:=]\s*['\"]?[0-9a-f]{16,}", path.read_text())


# --------------------------------------------------------------------------- cluster launcher


@pytest.mark.parametrize("name", ["onprem.yaml", "aws.yaml"])
def test_launcher_config_passes_rays_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(CLUSTER / name)
    validate_config(prepare_config(config))
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert len(start) == 1 and ". ~/logalyzer.env" in start[0], f"{key} must export the secrets"
    assert "~/logalyzer.env" in config["file_mounts"]


def test_onprem_config_lists_the_machines():
    config = load(CLUSTER / "onprem.yaml")
    provider = config["provider"]
    assert provider["type"] == "local"
    ips = [provider["head_ip"], *provider["worker_ips"]]
    for ip in ips:
        ipaddress.ip_address(ip)
    assert len(set(ips)) == len(ips)
    assert config["min_workers"] == config["max_workers"] == len(provider["worker_ips"])
    assert f"ray[data,train,serve]=={ray_version()}" in " ".join(config["setup_commands"])


def test_aws_config_runs_the_pinned_image():
    config = load(CLUSTER / "aws.yaml")
    assert config["provider"]["type"] == "aws"
    assert config["docker"]["image"] == image()
    assert config["head_node_type"] in config["available_node_types"]


# --------------------------------------------------------------------------- KubeRay


def _cluster_specs(kinds: dict) -> dict[str, dict]:
    return {
        "RayCluster": kinds["RayCluster"]["spec"],
        "RayJob": kinds["RayJob"]["spec"]["rayClusterSpec"],
        "RayService": kinds["RayService"]["spec"]["rayClusterConfig"],
    }


def test_kuberay_kinds_and_required_fields():
    kinds = manifests()
    assert {"RayCluster", "RayJob", "RayService", "Secret"} <= set(kinds)
    for kind in ("RayCluster", "RayJob", "RayService"):
        doc = kinds[kind]
        assert doc["apiVersion"] == "ray.io/v1"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert kinds["RayJob"]["spec"]["entrypoint"]
    assert kinds["RayJob"]["spec"]["shutdownAfterJobFinishes"] is True
    assert kinds["RayService"]["spec"]["serveConfigV2"]


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob", "RayService"])
def test_kuberay_clusters_pin_image_version_auth_and_secret(kind):
    spec = _cluster_specs(manifests())[kind]
    assert spec["rayVersion"] == ray_version()
    assert spec["authOptions"]["mode"] == "token", "token auth (KubeRay >= 1.5.1)"
    assert spec["headGroupSpec"]["rayStartParams"] is not None
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for g in spec["workerGroupSpecs"]:
        assert g["groupName"] and g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    secret = manifests()["Secret"]["metadata"]["name"]
    for g in groups:
        containers = g["template"]["spec"]["containers"]
        assert containers, "a pod template needs a container"
        for c in containers:
            assert c["image"] == image()
            env = {e["name"]: e for e in c.get("env", [])}
            ref = env["LOGALYZER_DSN"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret and ref["key"] in manifests()["Secret"]["stringData"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
    ports = {
        p["name"]: p["containerPort"]
        for p in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports["dashboard"] == 8265 and ports["gcs-server"] == 6379


def _same_as_shared(env: dict) -> None:
    shared = shared_runtime_env()
    assert REMOTE_URI.match(env["working_dir"]), "KubeRay needs a URI (a zip) for working_dir"
    strip = {"working_dir", "excludes"}
    assert {k: v for k, v in env.items() if k not in strip} == {
        k: v for k, v in shared.items() if k not in strip
    }


def test_rayjob_runs_the_pipeline_launcher_with_the_shared_runtime_env():
    from logalyzer.jobs.pipeline import parse_steps

    spec = manifests()["RayJob"]["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/pipeline.py"]
    assert (ROOT / argv[1]).is_file()
    steps = argv[argv.index("--steps") + 1]
    assert parse_steps(steps), "the entrypoint's steps must be built ones"
    _same_as_shared(yaml.safe_load(spec["runtimeEnvYAML"]))


def test_rayservice_serves_serve_app_with_the_shared_runtime_env():
    serve = yaml.safe_load(manifests()["RayService"]["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    # no Serve proxy (the replicas answer HTTP themselves), so no Serve route either
    assert serve["proxy_location"] == "Disabled" and app["route_prefix"] is None
    assert app["import_path"] == "serve.app:app"
    _same_as_shared(app["runtime_env"])
    own = load(ROOT / "serve" / "config.yaml")["applications"][0]  # serve deploy's config
    assert (app["name"], app["import_path"], app["deployments"]) == (
        own["name"],
        own["import_path"],
        own["deployments"],
    )
    module, attr = app["import_path"].split(":")
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is built on branch serve and not merged here yet")
    names = {
        t.id
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    assert attr in names, f"{path.name} defines no top-level {attr!r}"


# --------------------------------------------------------------------------- a real ray start +
# ray job submit


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _ray_processes(temp_dir: str, gcs_port: int) -> list:
    """The processes of *our* head: their command line names our temp dir or our GCS port
    (the Ray client server names only the GCS address, with the machine's IP rather than
    127.0.0.1), plus their descendants (workers)."""
    import psutil

    ours = re.compile(rf"--(?:gcs[-_])?address[= ]\S*:{gcs_port}\b")
    found = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if temp_dir in cmd or ours.search(cmd):
            found[p.pid] = p
    for p in list(found.values()):
        try:
            for c in p.children(recursive=True):
                found.setdefault(c.pid, c)
        except psutil.NoSuchProcess:
            pass
    found.pop(os.getpid(), None)
    return list(found.values())


def _stop(procs: list) -> None:
    import psutil

    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


@contextmanager
def ray_head(env: dict):
    """``ray start --head`` on loopback with its own ports and temp dir; yields the dashboard
    URL. On exit, stops exactly the processes of this head and leaves no address record that
    points at it."""
    temp_dir = tempfile.mkdtemp(prefix="lgz-ray-", dir="/tmp")  # short: Ray's socket paths
    gcs, dash, client, nm, om, al, ag, rt, me = _free_ports(9)
    default_record = Path("/tmp/ray/ray_current_cluster")
    before = default_record.read_text() if default_record.exists() else None
    cmd = [
        str(RAY_BIN),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}",
        f"--node-manager-port={nm}",
        f"--object-manager-port={om}",
        f"--dashboard-agent-listen-port={al}",
        f"--dashboard-agent-grpc-port={ag}",
        f"--runtime-env-agent-port={rt}",
        f"--metrics-export-port={me}",
        "--num-cpus=2",
        "--object-store-memory=200000000",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        yield f"http://127.0.0.1:{dash}"
    finally:
        _stop(_ray_processes(temp_dir, gcs))
        after = default_record.read_text() if default_record.exists() else None
        if after != before and after and after.strip().endswith(f":{gcs}"):
            default_record.unlink()  # never leave a record of a dead cluster behind
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not _ray_processes(temp_dir, gcs), "Ray processes of the test head survived"


def test_pipeline_job_on_a_ray_start_cluster(db, tmp_path):
    """The README's 'Ray cluster' path, end to end: synth → ray start → ray job submit."""
    fleet = tmp_path / "fleet"
    r = subprocess.run(
        [
            str(Path(sys.executable).parent / "logalyzer"),
            "synth",
            str(fleet),
            "--devices",
            "2",
            "--hours",
            "1",
            "--noise",
            "20",
            "--seed",
            "11",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    files = sorted(fleet.rglob("*.gz"))
    rxids = {re.search(r"R\d{10}", str(f)).group(0) for f in files}
    assert len(rxids) == 2

    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "LOGALYZER_"))}
    env.update(
        # `python` = this venv
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,  # Ray 2.60: clients need the same token
        LOGALYZER_DSN=db.dsn,  # as a Secret would put it on every node
        RAY_USAGE_STATS_ENABLED="0",
    )
    runtime_env = shared_runtime_env()
    runtime_env.pop("pip")  # the head runs in this venv already; installing needs the network

    started = time.monotonic()
    with ray_head(env) as dashboard:
        submit = [
            str(RAY_BIN),
            "job",
            "submit",
            "--address",
            dashboard,
            "--working-dir",
            ".",
            "--runtime-env-json",
            json.dumps(runtime_env),
            "--submission-id",
            "lgz-test",
            "--",
            "python",
            "jobs/pipeline.py",
            str(fleet),
            "--steps",
            "ingest,sessionize",
        ]
        r = subprocess.run(submit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        log = r.stdout[-4000:] + r.stderr[-4000:]
        status = subprocess.run(
            [str(RAY_BIN), "job", "status", "--address", dashboard, "lgz-test"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, log
        assert "job 'lgz-test' succeeded" in (status.stdout + status.stderr).lower(), log
        without_token = {
            k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")
        }
        denied = subprocess.run(
            [str(RAY_BIN), "job", "list", "--address", dashboard],
            env=without_token,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert denied.returncode != 0, "the dashboard must refuse a client without the token"
    elapsed = time.monotonic() - started

    parts = query(
        db.dsn,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'log_lines'::regclass ORDER BY 1",
    )
    assert [p[0] for p in parts] == sorted(r.lower() for r in rxids)
    per_device = dict(query(db.dsn, "SELECT rxid, count(*) FROM log_lines GROUP BY rxid"))
    assert set(per_device) == rxids and min(per_device.values()) > 100
    assert query(db.dsn, "SELECT DISTINCT status FROM ingested_files") == [("done",)]
    sessions = dict(query(db.dsn, "SELECT rxid, count(*) FROM sessions GROUP BY rxid"))
    assert set(sessions) == rxids and min(sessions.values()) > 0
    assert "ingest" in log and elapsed < 180, f"{elapsed:.0f} s"
