"""A real Prometheus (Debian's package) scrapes the real server; promtool lints the real scrape; every
PromQL expression of the dashboard and the alert rules evaluates without error."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, tool
from tests.e2e.conftest import RunningServer
from tests.launcher import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.ops]

ITEM = {"query": "What is 2 + 2?", "responses": ["4", "5"], "k": 2, "max_tokens": 64, "seed": 7}


@pytest.fixture(scope="module")
def prometheus(grm_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping the e2e server every second as job "grm-serve", with the alert rules loaded."""
    work: Path = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "grm-serve", "static_configs": [{"targets": [urlparse(grm_server.url).netloc]}]}
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            tool("prometheus", "Debian's prometheus package"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Prometheus answers 503 "Service Unavailable" (plain text) until its storage is open.
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=5).status_code == 200, "Prometheus to be ready", 60)
        wait_for(lambda: query(url, 'up{job="grm-serve"}') == [1.0], "Prometheus to scrape the server", 60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(prometheus: str, expr: str) -> list[float]:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, f"{expr}: HTTP {r.status_code} {r.text[:200]}"
    body = r.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return [float(x["value"][1]) for x in body["data"]["result"]]


def wait_for(check, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_promtool_accepts_a_real_scrape_with_the_engines_metrics(server_url):
    assert httpx.post(f"{server_url}/v1/score", json=ITEM, timeout=300).status_code == 200
    text = httpx.get(f"{server_url}/metrics", timeout=10).text
    for name in ("vllm_num_requests_running", "vllm_num_requests_waiting", "vllm_kv_cache_usage_perc"):
        assert f"\n{name}{{" in text, name
    for name in ("vllm_prefix_cache_hits_total", "vllm_generation_tokens_total", "grm_requests_total"):
        assert f"\n{name}{{" in text, name
    run = subprocess.run(
        [tool("promtool", "Debian's prometheus package"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_prometheus_sees_the_requests_just_sent(prometheus, server_url):
    expr = 'sum(grm_requests_total{job="grm-serve", route="/v1/score", outcome="ok"})'
    scraped = query(prometheus, expr)
    before = scraped[0] if scraped else 0.0
    for seed in (1, 2):
        assert httpx.post(f"{server_url}/v1/score", json={**ITEM, "seed": seed}, timeout=300).status_code == 200
    wait_for(lambda: query(prometheus, expr) == [before + 2], "the two requests in Prometheus", 30)
    samples = query(prometheus, 'sum(grm_samples_total{job="grm-serve", status=~"parsed|unparseable"})')
    assert samples and samples[0] >= 4  # k = 2 samples per item, two items at least


def promql_of_dashboard() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "grm-serve.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [
        v["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    ]
    # Grafana's variables, as Grafana would substitute them for this Prometheus.
    return [e.replace("$__rate_interval", "1m").replace("$job", "grm-serve").replace("$instance", ".*") for e in exprs]


def promql_of_rules() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_every_dashboard_and_alert_expression_evaluates(prometheus, server_url):
    assert httpx.post(f"{server_url}/v1/score", json={**ITEM, "seed": 3}, timeout=300).status_code == 200
    time.sleep(2)  # two scrapes after it, so rate() has points
    exprs = promql_of_dashboard() + promql_of_rules()
    assert len(exprs) > 25
    with_data = 0
    for expr in exprs:
        with_data += bool(query(prometheus, expr))  # asserts status "success"
    # Most panels show data after real traffic (the alerts, rightly, return nothing).
    assert with_data >= len(promql_of_dashboard()) // 2
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {r["health"] for g in rules for r in g["rules"]} == {"ok"}
