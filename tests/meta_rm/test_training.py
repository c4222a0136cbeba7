"""Sampling into the cache and training, on a scripted GRM whose careful samples are the right ones."""

import asyncio
import json
import random

from meta_rm.linear import LinearModel
from meta_rm.training.cli import main as meta_rm_main
from meta_rm.training.data import read_preferences
from meta_rm.training.sampling import SamplingConfig, load_cache, sample_items
from meta_rm.training.train import label_records
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from server.pipeline.judges import DeepSeekGRM
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from server.pipeline.scoring import Scorer

CONFIG = SamplingConfig(
    "embedded", DEFAULT_TEMPLATE, k=8, temperature=0.5, max_tokens=256, format_guidance=True, seed=0
)


def noisy_judge(request: GenerationRequest) -> list[str]:
    """Careful samples score the chosen answer ("good ...") 8 and others 3; careless ones guess."""
    rng = random.Random(request.seed)
    shown = shown_responses(request.prompt)
    texts = []
    for _ in range(request.n):
        if rng.random() < 0.5:
            scores = ["8" if r.startswith("good") else "3" for r in shown]
            texts.append(
                f"Specific Criteria: facts checked.\nAnalysis: careful reading.\nScores: \\boxed{{{', '.join(scores)}}}"
            )
        else:
            scores = [str(rng.randint(1, 10)) for _ in shown]
            texts.append(
                f"Specific Criteria: style.\nAnalysis: quick impression.\nScores: \\boxed{{{', '.join(scores)}}}"
            )
    return texts


def write_pairs(tmp_path, n=60):
    path = tmp_path / "pairs.jsonl"
    lines = [
        json.dumps(
            {
                "id": f"t:{i}",
                "source": "t" if i % 2 else "u",
                "prompt": f"question {i}?",
                "chosen": f"good answer {i}",
                "rejected": f"bad answer {i}",
            }
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def sample(items, cache):
    engine = FakeEngine(noisy_judge)
    await engine.start()
    judge = DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE))
    scorer = Scorer(
        judge,
        generate=engine.generate,
        max_group_size=8,
        format_guidance=True,
    )
    records, skipped = await sample_items(scorer, items, CONFIG, cache, concurrency=4)
    return engine, records, skipped


def test_sampling_writes_every_item_and_resumes_without_new_engine_work(tmp_path):
    items = read_preferences(write_pairs(tmp_path, 6))
    cache = tmp_path / "traj.jsonl"
    engine, records, skipped = asyncio.run(sample(items, cache))
    assert len(records) == 6 and not skipped and engine.requests
    assert all(len(r["samples"]) == 8 and r["config"]["k"] == 8 for r in records)
    with cache.open("a") as f:
        f.write('{"id": "torn')  # what a killed run leaves behind
    engine2, again, _ = asyncio.run(sample(items, cache))
    assert engine2.requests == [] and [r["id"] for r in again] == [r["id"] for r in records]
    other = SamplingConfig(**{**CONFIG.__dict__, "k": 4})
    assert load_cache(cache, other) == {}


def test_labels_follow_the_strictly_higher_rule(tmp_path):
    items = read_preferences(write_pairs(tmp_path, 4))
    _, records, _ = asyncio.run(sample(items, tmp_path / "c.jsonl"))
    for s in label_records(records):
        careful = "careful" in s.trajectory.output
        shown_good = [r.startswith("good") for r in s.trajectory.responses]
        good_score = s.trajectory.scores[shown_good.index(True)]
        other = s.trajectory.scores[shown_good.index(False)]
        assert s.label == (good_score > other)
        if careful:
            assert s.label


def test_train_command_saves_an_artifact_that_beats_plain_voting_on_held_out_prompts(tmp_path, capsys):
    data = write_pairs(tmp_path, 80)
    cache = tmp_path / "traj.jsonl"
    asyncio.run(sample(read_preferences(data), cache))
    out = tmp_path / "artifact"
    code = meta_rm_main(
        ["train", "--data", str(data), "--trajectories", str(cache), "--out", str(out), "--no-sample", "--k", "8"]
    )
    assert code == 0
    model = LinearModel.load(out)
    meta = model.metadata
    assert meta["k"] == 8 and meta["grm_model"] == "embedded" and meta["template"] == DEFAULT_TEMPLATE
    assert list(meta["data_files"]) == ["pairs.jsonl"] and len(meta["data_files"]["pairs.jsonl"]) == 64
    held = meta["heldout"]
    assert held["items"] > 5 and held["auc"] > 0.95
    assert held["pair_accuracy"]["meta_rm_voting"] >= held["pair_accuracy"]["voting"]
    assert "MetaRM@8" in capsys.readouterr().out


def test_bad_data_is_a_clear_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    code = meta_rm_main(["sample", "--data", str(bad), "--trajectories", str(tmp_path / "t.jsonl")])
    assert code == 2 and "bad.jsonl:1: not JSON" in capsys.readouterr().err
