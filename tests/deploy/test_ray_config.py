"""The Ray Serve app's builder and config file, checked without starting Ray (the two-replica run on a
real local cluster is tests/e2e/test_ray_serve_e2e.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

RAY_APP = DEPLOY / "ray"


@pytest.fixture
def grm_ray_app() -> Iterator[ModuleType]:
    pytest.importorskip("ray.serve", reason="ray[serve] is part of the dev extra")
    sys.path.insert(0, str(RAY_APP))
    try:
        import grm_ray_app

        yield grm_ray_app
    finally:
        sys.path.remove(str(RAY_APP))


def backend(app):
    """The grm-serve deployment behind the app's front deployment."""
    front = app._bound_deployment
    assert front.name == "grm-front"
    return front.init_args[0]._bound_deployment


def test_fixed_replicas_and_settings(grm_ray_app):
    app = grm_ray_app.build({"replicas": "3", "num_gpus": "1", "model": "/models/grm", "k": "16"})
    d = backend(app)
    assert d.num_replicas == 3 and d.ray_actor_options["num_gpus"] == 1
    assert d.init_args == ({"model": "/models/grm", "k": "16"},)
    assert d.max_ongoing_requests == 4096  # grm-serve's own max_concurrent_requests (its memory guard)


def test_autoscaling_and_tensor_parallel(grm_ray_app):
    app = grm_ray_app.build({"min_replicas": "1", "max_replicas": "4", "tensor_parallel_size": "2"})
    d = backend(app)
    assert d._deployment_config.autoscaling_config.max_replicas == 4
    assert d._replica_config.placement_group_bundles == [{"CPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}]
    assert d.init_args[0]["tensor_parallel_size"] == 2
    assert d.init_args[0]["extra_engine_args"] == {"distributed_executor_backend": "ray"}


def test_prompt_affine_routing_is_the_default_and_can_be_turned_off(grm_ray_app):
    from grm_ray_routing import PromptAffinityRouter

    config = backend(grm_ray_app.build({"front_replicas": "2"}))._deployment_config.request_router_config
    assert config.request_router_class.endswith("PromptAffinityRouter") or (
        config.request_router_class is PromptAffinityRouter
    )
    front = grm_ray_app.build({"front_replicas": "2", "replicas": "8"})._bound_deployment
    assert front.num_replicas == 2 and front.ray_actor_options["num_cpus"] == 0
    assert front.max_ongoing_requests == 8 * 4096  # room for every replica's calls, not one replica's
    plain = backend(grm_ray_app.build({"affinity": "false"}))._deployment_config.request_router_config
    assert "PowerOfTwoChoices" in str(plain.request_router_class)


def test_the_front_checks_with_the_replicas_settings_and_environment(grm_ray_app):
    args = {"api_keys": "k", "max_body_bytes": "2048", "env": "GRM_METRICS_PUBLIC=false", "front_buffer_mib": "2"}
    app = grm_ray_app.build(args)
    front, replicas = app._bound_deployment, backend(app)
    assert front.init_args[1] == replicas.init_args[0] == {"api_keys": "k", "max_body_bytes": "2048"}
    assert front.init_args[2] == 2 * 1024**2
    assert front.ray_actor_options["runtime_env"] == replicas.ray_actor_options["runtime_env"]
    with pytest.raises(ValueError, match="front_buffer_mib"):
        grm_ray_app.build({"front_buffer_mib": "1"})  # cannot hold one body of the default 8 MiB


def test_bad_arguments_are_refused(grm_ray_app):
    with pytest.raises(ValueError, match="NAME=value"):
        grm_ray_app.build({"env": "oops"})
    with pytest.raises(ValueError, match="k"):
        grm_ray_app.build({"k": "zero"})  # a grm-serve setting, validated like GRM_K


def test_serve_config_file_is_valid_and_builds(grm_ray_app):
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((RAY_APP / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)  # what `serve deploy` checks first
    (app_config,) = config["applications"]
    assert app_config["import_path"] == "grm_ray_app:build"
    d = backend(grm_ray_app.build(app_config["args"]))
    assert d.ray_actor_options["num_gpus"] == 1
    assert d._deployment_config.autoscaling_config.min_replicas == 1
    assert d.init_args[0]["model"] == "/models/DeepSeek-GRM-27B"


async def test_the_metrics_bridge_copies_every_grm_series_tagged_by_replica(grm_ray_app):
    from grm_ray_metrics import RayMetricsBridge

    from server.engines.fake import FakeEngine
    from tests.api.conftest import item, running_app

    recorded: dict[tuple[str, frozenset], float] = {}

    class Recorder:
        def __init__(self, name, description, tag_keys):
            self.name, self.tag_keys = name, tag_keys

        def set(self, value, tags):
            assert tuple(sorted(tags)) == tuple(sorted(self.tag_keys))  # Ray refuses undeclared tags
            recorded[(self.name, frozenset(tags.items()))] = value

    for replica, calls in (("r1", 3), ("r2", 5)):
        async with running_app(FakeEngine()) as client:
            for i in range(calls):
                assert (await client.post("/v1/score", json=item(seed=i))).status_code == 200
            registry = client._transport.app.state.grm.metrics.registry  # type: ignore[attr-defined]
            assert RayMetricsBridge(registry, replica, gauge=Recorder).export_once() > 0

    def total(name, **labels):
        want = set(labels.items())
        return sum(v for (n, tags), v in recorded.items() if n == name and want <= set(tags))

    assert total("grm_requests_total", route="/v1/score", outcome="ok") == 8
    assert total("grm_requests_total", route="/v1/score", outcome="ok", replica="r2") == 5
    assert total("grm_request_duration_seconds_count", route="/v1/score") == 8
    assert total("grm_request_duration_seconds_bucket", route="/v1/score", le="+Inf") == 8
    assert not any(n.endswith("_created") or not n.startswith("grm_") for n, _ in recorded)
