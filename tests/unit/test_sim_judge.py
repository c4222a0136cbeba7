"""The simulation's judge (benchmarks/sim_judge.py): the soft vote the server reads from its logprobs is
its distribution's mean, "10" included, so benchmarks/adaptive.py --soft-sd measures what it says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from sim_judge import _Opinion, distribution_judge

from server.pipeline.domain import Message, SampleStatus
from server.pipeline.judges import DeepSeekGRM
from server.pipeline.prompts import DEFAULT_TEMPLATE, get_template
from server.pipeline.scoring import Scorer, ScoreSpec

SD, SOFT_SD = 1.5, 0.8


@pytest.mark.parametrize("qualities", [(9.6, 1.2), (5.5, 5.0), (1.0, 10.0)])
async def test_the_soft_vote_read_is_the_judges_distribution_mean(qualities) -> None:
    pair = tuple(f"r{i} quality={q}" for i, q in enumerate(qualities))
    scorer = Scorer(DeepSeekGRM(template=get_template(DEFAULT_TEMPLATE)), generate=distribution_judge(SD, SOFT_SD),
                    max_group_size=4, format_guidance=False)  # fmt: skip
    spec = ScoreSpec((Message("user", "q"),), pair, 8, 0.5, 1.0, 256, seed=7, votes="soft")
    (result,) = await scorer.score_many([spec])
    assert len(result.samples) == 8
    for s in result.samples:
        assert s.status is SampleStatus.PARSED
        seed = int(s.text.split("seed ")[1].split(".")[0])
        opinions = [_Opinion(seed, r, SD, SOFT_SD) for r in pair]
        assert s.scores == tuple(o.value for o in opinions)  # the hard vote: the value drawn
        means = [sum(v * p for v, p in o.p.items()) for o in opinions]
        # Within 0.001: an alternative under 1e-4 of the mass is left out without a scoring pass, which moves
        # a vote by at most 1e-4 of the scale's spread (0.0009 on 1..10; docs/adaptive.md, Soft votes).
        assert s.soft_scores == pytest.approx(means, abs=1e-3)
