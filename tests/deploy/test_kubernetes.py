"""Kubernetes manifests: rendered with kustomize (kubectl), validated offline against the schemas."""

from __future__ import annotations

import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, tool

K8S = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ["cpu", "gpu"]

# The part of prometheus-operator's ServiceMonitor CRD (monitoring.coreos.com/v1) these manifests use;
# kubernetes-validate knows only built-in kinds.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?)$"},
                            "scrapeTimeout": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


def render(overlay: str) -> list[dict]:
    run = subprocess.run(
        [
            tool("kubectl", "kubectl >= 1.27, whose `kubectl kustomize` renders the overlays"),
            "kustomize",
            str(K8S / "overlays" / overlay),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def validate(doc: dict) -> None:
    if doc["kind"] == "ServiceMonitor":
        jsonschema.validate(doc, SERVICE_MONITOR)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def base_documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    return [yaml.safe_load((K8S / "base" / name).read_text()) for name in kustomization["resources"]]


@pytest.mark.ops
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_validates(overlay):
    docs = render(overlay)
    assert {d["kind"] for d in docs} == {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs:
        validate(doc)


def test_base_manifests_validate():
    for doc in base_documents():
        validate(doc)


def test_a_wrong_manifest_is_caught():
    deployment = next(d for d in base_documents() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["httpGet"]["port"] = {"no": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor = next(d for d in base_documents() if d["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "soon"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def container(docs: list[dict]) -> tuple[dict, dict]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


@pytest.mark.ops
def test_gpu_overlay_requests_a_gpu_and_probes_the_health_routes():
    pod, c = container(render("gpu"))
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60  # weight loading
    drain = int(next(e["value"] for e in c["env"] if e["name"] == "GRM_DRAIN_TIMEOUT_S"))
    assert pod["terminationGracePeriodSeconds"] > drain
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.ops
def test_cpu_overlay_has_no_gpu_and_no_weights_volume():
    pod, c = container(render("cpu"))
    assert "nvidia.com/gpu" not in str(c["resources"])
    assert "models" not in {v["name"] for v in pod["volumes"]}
    assert c["image"].endswith(":cpu")


@pytest.mark.ops
def test_selectors_match_the_pods():
    for overlay in OVERLAYS:
        docs = render(overlay)
        pod_labels = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
        service = next(d for d in docs if d["kind"] == "Service")
        assert service["spec"]["selector"].items() <= pod_labels.items()
        monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
