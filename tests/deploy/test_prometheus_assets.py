"""Alert rules, their unit tests and the Compose Prometheus config, through Debian's promtool."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, tool

RULES = DEPLOY / "prometheus" / "alerts.yml"

pytestmark = pytest.mark.ops


def promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("promtool", "Debian's prometheus package"), *args], capture_output=True, text=True, cwd=cwd
    )


def test_alert_rules_are_valid():
    run = promtool("check", "rules", str(RULES))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 6 rules found" in run.stdout


def test_alert_rules_unit_tests_pass():
    run = promtool("test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_unit_tested_firing():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts == fired


def test_compose_prometheus_config_is_valid(tmp_path):
    # The Compose file mounts alerts.yml at /etc/prometheus/alerts.yml; point at the repo's copy.
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(RULES))
    (tmp_path / "prometheus.yml").write_text(config)
    run = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    job = yaml.safe_load(config)["scrape_configs"][0]
    assert job["job_name"] == "grm-serve" and job["metrics_path"] == "/metrics"
