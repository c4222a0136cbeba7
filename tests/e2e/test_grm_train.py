"""grm-train rft on the real engine and the embedded GRM, on a tiny subset, then grm-serve --adapter serving it.

Nine training pairs (three per train file), k=2, two optimizer steps: the stage counts must add up, the
adapter must load onto the embedded model, and the server must answer /v1/score with parsed samples.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from server.engines.model_files import default_cache_dir, ensure_embedded_model
from tests.conftest import shared_file
from tests.launcher import LaunchError, launch

pytestmark = pytest.mark.e2e

K, PER_FILE, FILES = 2, 3, ("rmb-train.jsonl", "rm-bench-train.jsonl", "hh-rlhf-harmless-train.jsonl")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A cache of its own (merged models land there), sharing the converted embedded model."""
    cache = tmp_path_factory.mktemp("cache")
    embedded = ensure_embedded_model(default_cache_dir())
    (cache / embedded.name).symlink_to(embedded, target_is_directory=True)
    return cache


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("rft") / "run"
    data = [str(shared_file("data", "train", name)) for name in FILES]
    argv = [sys.executable, "-m", "grm_train.cli", "rft", "--data", *data, "--out", str(out), "--limit", str(PER_FILE)]
    argv += ["--k", str(K), "--max-tokens", "128", "--max-steps", "2", "--grad-accum", "1", "--save-steps", "1"]
    argv += ["--cache-dir", str(cache_dir)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-4000:]
    return out


def stage_counts(out) -> dict[str, dict]:
    return {r["stage"]: r["counts"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


def test_every_trajectory_and_item_is_counted_once(run_dir):
    counts = stage_counts(run_dir)
    items = PER_FILE * len(FILES)
    sample, select, hint, train = counts["sample"], counts["select"], counts["hint"], counts["train"]
    assert sample["items"] == items and sample["samples"] == K * items and sample["skipped_too_long"] == 0
    assert select["accepted"] + select["wrong"] + select["too_easy_trajectories"] == K * items
    assert select["too_easy_items"] + select["hint_needed_items"] + select["kept_items"] == items
    assert hint["hinted_items"] == select["hint_needed_items"] and hint["hinted_kept"] <= hint["hinted_items"]
    assert train["accepted"] == select["accepted"] and train["hinted"] == hint["hinted_kept"]
    assert train["examples"] + train["dropped_too_long"] == train["accepted"] + train["hinted"]
    assert train["optimizer_steps"] == 2 and train["last_loss"] > 0


def test_the_run_writes_an_adapter_with_its_config_and_counts(run_dir):
    adapter = run_dir / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    run = json.loads((adapter / "grm_train.json").read_text())
    assert run["sampling"]["k"] == K and [s["stage"] for s in run["stages"]][-1] == "train"
    examples = [json.loads(line) for line in (run_dir / "dataset.jsonl").read_text().splitlines()]
    assert examples and not any("#### Hint ####" in e["prompt"] for e in examples)


def test_grm_serve_serves_the_adapter(run_dir, cache_dir, tmp_path):
    args = ["--engine", "vllm", "--model", "embedded", "--adapter", str(run_dir / "adapter")]
    args += ["--cache-dir", str(cache_dir)]
    try:
        with launch(args, log=tmp_path / "server.log", start_timeout_s=900) as srv:
            info = httpx.get(f"{srv.url}/v1/info", timeout=10).json()
            body = {"query": "What is 2 + 2?", "responses": ["4", "5"], "k": 2, "seed": 3, "max_tokens": 128}
            scored = httpx.post(f"{srv.url}/v1/score", json={**body, "return_samples": True}, timeout=600)
    except LaunchError as exc:
        pytest.fail(str(exc))
    assert info["adapter"]["name"] == "adapter" and info["meta_rm"] is None
    assert scored.status_code == 200, scored.text
    samples = scored.json()["samples"]
    assert len(samples) == 2 and any(s["status"] == "parsed" for s in samples)
