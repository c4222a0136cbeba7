"""A real trainer on the real server: TRL's GRPOTrainer takes its rewards from grm-serve over HTTP.

The policy is a tiny randomly initialised Llama built from a config (no download); its completions
are gibberish, which is fine: the test is about the wiring. Two optimisation steps run on CPU, each
scoring its completions through ``grm_client.integrations.trl.grm_reward_func`` against the session's
grm-serve process (vLLM, the embedded GRM and meta RM).
"""

from __future__ import annotations

import pytest

from tests.tiny_models import tiny_llama, word_tokenizer

pytestmark = pytest.mark.e2e

WORDS = ["[PAD]", "[UNK]", "[EOS]", "the", "sky", "is", "blue", "green", "why", "?", "yes", "no", "cats", "purr", "."]


def tiny_policy(folder):
    from transformers import LlamaForCausalLM

    tokenizer = word_tokenizer(WORDS, eos_token="[EOS]", padding_side="left")
    return str(
        tiny_llama(
            folder, LlamaForCausalLM, tokenizer, hidden_size=32, intermediate_size=64, eos_token_id=2, bos_token_id=2
        )
    )


def grpo_run(tmp_path, *, max_steps: int, num_generations: int):
    """The dataset and GRPOConfig both trainer tests use: two prompts with a reference column (as
    math/QA datasets have: each prompt's completions are judged against it), tiny steps on CPU."""
    from datasets import Dataset
    from trl import GRPOConfig

    dataset = Dataset.from_dict({"prompt": ["why is the sky blue ?", "cats purr ?"] * 4, "answer": ["blue", "yes"] * 4})
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        num_generations=num_generations,
        max_completion_length=8,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    return dataset, args


def test_grpo_trainer_runs_two_steps_on_rewards_from_the_server(grm_server, tmp_path):
    from trl import GRPOTrainer

    from grm_client import GRMClient
    from grm_client.integrations.trl import grm_reward_func

    calls: list[list[float]] = []
    # missing=-1: a completion the server could not score would fall outside [0, 1] and fail the test,
    # so the rewards checked below are real votes, not the fallback.
    client = GRMClient(base_url=grm_server.url)
    inner = grm_reward_func(
        client=client, reward="unit", missing=-1.0, reference_column="answer", k=2, max_tokens=64, seed=0
    )

    def reward(prompts, completions, **kwargs):
        rewards = inner(prompts=prompts, completions=completions, **kwargs)
        calls.append(rewards)
        return rewards

    reward.__name__ = "grm"
    before = grm_server.access_count("/v1/score")
    policy = tiny_policy(tmp_path / "policy")
    logged_before = len(grm_server.records("GRM prompt"))
    dataset, args = grpo_run(tmp_path, max_steps=2, num_generations=2)
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=args, train_dataset=dataset)
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(calls) >= 2 and all(len(c) == 4 and all(0.0 <= r <= 1.0 for r in c) for c in calls)
    assert grm_server.access_count("/v1/score") - before == len(calls)  # every reward batch hit the server
    logged = [h for h in trainer.state.log_history if "rewards/grm/mean" in h]
    assert len(logged) == 2
    prompts = [r["prompt"] for r in grm_server.records("GRM prompt")[logged_before:]]
    assert prompts and all("#### Reference Answer ####\n" in p for p in prompts)
    for p in prompts:
        expected = "blue" if "why is the sky blue ?" in p else "yes"
        assert f"#### Reference Answer ####\n{expected}\n" in p


def grouped_rows_total(url: str) -> float:
    import httpx

    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("grm_grouped_rows_total "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no grm_grouped_rows_total")


def test_grpo_trainer_with_the_async_reward_function_gets_grouped_rewards(grm_server, tmp_path):
    """TRL runs ``async def`` reward functions on its daemon event loop; grm-client's sends each
    completion in its own call and the server groups the calls of one prompt."""
    import inspect

    from trl import GRPOTrainer

    from grm_client.integrations.trl import grm_async_reward_func

    calls: list[list[float]] = []
    # No seed: a seeded item must be repeatable, so the server never groups it with other calls' rows.
    inner = grm_async_reward_func(
        grm_server.url, reward="unit", missing=-1.0, reference_column="answer", k=2, max_tokens=64
    )

    async def reward(prompts, completions, **kwargs):
        rewards = await inner(prompts=prompts, completions=completions, **kwargs)
        calls.append(rewards)
        return rewards

    reward.__name__ = "grm"
    assert inspect.iscoroutinefunction(reward)
    grouped_before = grouped_rows_total(grm_server.url)
    logged_before = len(grm_server.records("GRM prompt"))
    dataset, args = grpo_run(tmp_path, max_steps=1, num_generations=4)
    trainer = GRPOTrainer(
        model=tiny_policy(tmp_path / "policy"), reward_funcs=[reward], args=args, train_dataset=dataset
    )
    assert trainer._has_async_funcs  # TRL took the async path
    trainer.train()

    assert trainer.state.global_step == 1
    assert calls and all(all(0.0 <= r <= 1.0 for r in c) for c in calls)  # -1.0 would be an unscored row
    assert grouped_rows_total(grm_server.url) > grouped_before  # the concurrent one-row calls were grouped
    prompts = [r["prompt"] for r in grm_server.records("GRM prompt")[logged_before:]]
    assert prompts and all("#### Reference Answer ####\n" in p for p in prompts)
