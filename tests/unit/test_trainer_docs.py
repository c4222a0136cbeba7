"""docs/trainers.md's snippets, checked by each framework's own parser or config (installed by make install).

The e2e suite runs the same snippets against the live server (tests/e2e/test_trainers_e2e.py).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from grm_client.integrations import verl as grm_verl
from tests.trainer_docs import DOCS, command_args, openrlhf_args, snippet, verl_config, verl_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_openrlhf_command_line_passes_openrlhfs_own_parser():
    args = openrlhf_args(command_args("openrlhf"))
    assert args.reward.remote_url == "http://grm:8000/get_reward"
    assert args.data.label_key == "answer" and args.rollout.n_samples_per_prompt == 8


def test_openrlhfs_parser_refuses_the_old_flag(capsys):
    """The mistake the docs used to make: 0.11 renamed --remote_rm_url."""
    with pytest.raises(SystemExit) as exit_:
        openrlhf_args(["--remote_rm_url", "http://grm:8000/get_reward"])
    assert exit_.value.code == 2 and "unrecognized arguments: --remote_rm_url" in capsys.readouterr().err


@pytest.mark.parametrize("doc", ["README.md", "clients/README.md", "docs/trainers.md"])
def test_no_doc_tells_users_the_flag_openrlhf_0_11_refuses(doc):
    text = (ROOT / doc).read_text()
    assert "--remote_rm_url http" not in text and "--remote_rm_url=" not in text


def test_verl_overrides_compose_with_verls_config_and_load_grm_clients_function():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = verl_config(verl_overrides())
    block = config.reward.custom_reward_function
    assert Path(block.path).resolve() == Path(inspect.getfile(grm_verl)).resolve()
    assert block.name == "compute_score_async"
    assert dict(block.reward_kwargs) == {"base_url": "http://grm:8000", "reward": "unit", "k": 4}
    loaded = get_custom_reward_fn(config)
    assert inspect.iscoroutinefunction(loaded)  # so verl's reward loop awaits it instead of using a thread
    assert loaded.args[0].__name__ == "compute_score_async" and loaded.args[1] == dict(block.reward_kwargs)


def test_verls_reward_kwargs_carry_an_api_key_to_grm_clients_client(monkeypatch):
    """The docs' ``+reward.custom_reward_function.reward_kwargs.api_key=KEY``, through verl's loader."""
    import asyncio

    from verl.trainer.ppo.reward import get_custom_reward_fn

    import grm_client as g
    from tests.clients.test_async_integrations import recording

    clients: list[tuple[str, str | None]] = []

    def loop_client(base_url: str, api_key: str | None = None) -> g.AsyncGRMClient:
        clients.append((base_url, api_key))
        return g.AsyncGRMClient(base_url=base_url, api_key=api_key, transport=recording([]))

    loaded = get_custom_reward_fn(verl_config(verl_overrides(extra={"api_key": "KEY"})))
    # verl loads the file as a module of its own: the loop_client its function calls is in that module.
    monkeypatch.setitem(loaded.args[0].__globals__, "loop_client", loop_client)
    asyncio.run(loaded(data_source="geo", solution_str="Paris", ground_truth="Paris", extra_info={"question": "q?"}))
    assert clients == [("http://grm:8000", "KEY")]


def test_verls_config_refuses_a_misspelt_key():
    from hydra.errors import ConfigCompositionException

    overrides = [o.replace("custom_reward_function.name", "custom_reward_function.nam") for o in verl_overrides()]
    with pytest.raises(ConfigCompositionException):
        verl_config(overrides)


def test_slime_flags_name_the_reward_route_and_key():
    """slime cannot be installed here (not on the package index), so its parser cannot check these: the
    e2e test drives /v1/reward with its remote_rm call and reads the reward by this key."""
    words = snippet("slime").split()
    assert words == ["--rm-type", "remote_rm", "--rm-url", "http://grm:8000/v1/reward", "--reward-key", "reward"]


@pytest.mark.parametrize(
    ("name", "module"),
    [("areal", "areal"), ("areal", "areal_workflow"), ("nemo_gym", "nemo_gym")],
)
def test_an_adapters_docstring_shows_the_checked_snippet(name, module):
    """The docstring a user reads in the editor holds the lines the tests run, not an older recipe.
    Read from the source: importing areal_workflow would import AReaL, which rewires the process's logging."""
    import ast

    source = ROOT / "clients" / "grm_client" / "integrations" / f"{module}.py"
    doc = ast.get_docstring(ast.parse(source.read_text())) or ""
    lines = [line.strip() for line in snippet(name).splitlines() if line.strip() and not line.startswith("# ")]
    assert [line for line in lines if line not in doc] == []


def test_every_checked_snippet_is_used():
    import re

    names = re.findall(r"<!-- checked: (\w+)", DOCS.read_text())
    assert sorted(names) == ["areal", "nemo_gym", "openrlhf", "slime", "verl"]
