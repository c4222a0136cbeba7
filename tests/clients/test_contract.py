"""The client against the real app in-process (FakeEngine, lifespan running): the wire formats agree."""

import httpx
import pytest

import grm_client as g
from meta_rm.fake import FakeMetaRM
from server.app import build_app
from server.config import Settings
from server.engines.fake import FakeEngine


@pytest.fixture
async def app():
    app = build_app(Settings(engine="fake"), engine=FakeEngine(), meta_rm=FakeMetaRM())
    async with app.router.lifespan_context(app):
        await app.state.grm.wait_ready(timeout=10)
        yield app


def client_for(app, **kwargs):
    return g.AsyncGRMClient(base_url="http://grm.test", transport=httpx.ASGITransport(app=app), **kwargs)


async def test_score_rank_info_and_health_round_trip(app):
    async with client_for(app) as client:
        assert await client.health()
        result = await client.score(
            "Is the sky blue?", ["Yes, on a clear day.", "No."], k=4, seed=1, return_samples=True
        )
        ranking = await client.rank("q", ["short", "a much longer answer"], k=2)
        info = await client.info()
    assert result.model == "fake-grm" and result.k == 4 and result.k_meta == 2
    assert result.responses[0].score > result.responses[1].score
    assert result.samples is not None and sum(s.kept for s in result.samples) == 2
    assert ranking.best == 1 and ranking.order == [1, 0]
    assert info["meta_rm"]["name"] == "fake"


async def test_server_validation_errors_arrive_typed_and_unretried(app):
    async with client_for(app, max_retries=3) as client:
        with pytest.raises(g.InvalidRequestError, match="max_k"):
            await client.score("q", ["a"], k=1000)
        with pytest.raises(g.InvalidRequestError):
            await client.score([{"role": "assistant", "content": "x"}], ["a"])


async def test_batch_through_the_real_app(app):
    async with client_for(app, batch_size=2) as client:
        results = await client.score_batch([g.build_item(f"q{i}", ["a", "bb"], k=2) for i in range(5)])
    assert len(results) == 5 and all(r.responses[1].score >= r.responses[0].score for r in results)


async def test_rerank_round_trip_best_first_with_top_n(app):
    docs = ["short", "a much longer answer, with detail", "medium length one"]
    async with client_for(app) as client:
        results = await client.rerank("q?", docs, top_n=2, k=2, return_documents=True)
    assert [r.index for r in results] == [1, 2]
    assert results[0].relevance_score > results[1].relevance_score and results[0].document == docs[1]
    assert isinstance(results[0], g.RerankResult) and results[0].votes > 0


async def test_adaptive_options_reach_the_server_and_raw_rewards_stay_on_full_ks_scale(app):
    """With the meta RM, rank cannot stop a pair before 13 of k=16 samples (docs/adaptive.md): it draws 14."""
    pair = ("Explain tides.", ["The Moon's gravity pulls the oceans into two bulges.", "No."])
    async with client_for(app) as client:
        full = await client.score(*pair, k=16, seed=2)
        fast = await client.score(*pair, k=16, seed=2, adaptive="rank", k_min=2)
    assert (full.k_used, full.stop_reason, fast.k_used, fast.stop_reason) == (16, "off", 14, "rank")
    assert [r.votes for r in fast.responses] == [7, 7]  # the best half of the 14 drawn
    assert fast.rewards("raw") == full.rewards("raw")  # 7 votes scaled to full k's 8: the same sums
    assert fast.rewards("mean") == full.rewards("mean")


async def test_soft_votes_round_trip(app):
    async with client_for(app) as client:
        pair = ["short", "a much longer answer than the other"]
        result = await client.score("q", pair, k=2, seed=3, votes="soft", return_samples=True)
        rollout = await client.reward("q", pair[1], votes="soft")
    assert result.votes == "soft" and rollout.votes == "soft"
    assert result.samples is not None and all(s.soft_source == "sampled" for s in result.samples)
    assert all(len(s.soft_scores or []) == 2 for s in result.samples)
    assert result.responses[1].mean_score > result.responses[0].mean_score
