"""Guided voting through the pipeline and the HTTP API: only the samples the meta RM keeps vote."""

from meta_rm.fake import FakeMetaRM
from server.engines.base import GenerationRequest
from server.engines.fake import FakeEngine, shown_responses
from tests.api.conftest import running_app

ITEM = {"query": "Which letter comes first?", "responses": ["A", "B"], "k": 4, "seed": 3, "return_samples": True}


def half_trustworthy(request: GenerationRequest) -> list[str]:
    """Every request gets one careful sample (A beats B) and one careless one (B beats A)."""
    shown = shown_responses(request.prompt)
    careful = ", ".join("9" if r == "A" else "2" for r in shown)
    careless = ", ".join("2" if r == "A" else "9" for r in shown)
    texts = [
        f"Specific Criteria: order.\nAnalysis: careful check.\nScores: \\boxed{{{careful}}}",
        f"Specific Criteria: vibes.\nAnalysis: careless guess.\nScores: \\boxed{{{careless}}}",
    ]
    return [texts[i % 2] for i in range(request.n)]


def trusts_careful(t) -> float:
    return 1.0 if "careful" in t.output else -1.0


async def test_without_a_meta_rm_every_parsed_sample_votes_and_the_pair_ties():
    async with running_app(FakeEngine(half_trustworthy)) as client:
        body = (await client.post("/v1/score", json=ITEM)).json()
    assert [r["score"] for r in body["responses"]] == [22.0, 22.0]
    assert body["k_meta"] is None
    assert all(s["kept"] and s["meta_score"] is None for s in body["samples"])


async def test_only_the_samples_the_meta_rm_keeps_vote():
    meta = FakeMetaRM(trusts_careful)
    async with running_app(FakeEngine(half_trustworthy), meta_rm=meta) as client:
        body = (await client.post("/v1/score", json=ITEM)).json()
    a, b = body["responses"]
    assert (a["score"], b["score"]) == (18.0, 4.0)  # two careful votes: 9 + 9 against 2 + 2
    assert a["votes"] == 2 and a["valid_samples"] == 4 and body["k_meta"] == 2
    kept = [s for s in body["samples"] if s["kept"]]
    assert len(kept) == 2 and all("careful" in s["critique"] for s in kept)
    assert sorted(s["meta_score"] for s in body["samples"]) == [-1.0, -1.0, 1.0, 1.0]
    assert meta.calls == [4]  # one batch per item, every parsed sample rated


async def test_per_request_k_meta_overrides_the_default():
    async with running_app(FakeEngine(half_trustworthy), meta_rm=FakeMetaRM(trusts_careful), k_meta=3) as client:
        default = (await client.post("/v1/score", json=ITEM)).json()
        one = (await client.post("/v1/score", json={**ITEM, "k_meta": 1})).json()
    assert default["k_meta"] == 3 and default["responses"][0]["votes"] == 3
    assert one["k_meta"] == 1 and one["responses"][0]["score"] == 9.0


async def test_k_meta_over_k_or_without_a_meta_rm_is_400():
    async with running_app(FakeEngine(), meta_rm=FakeMetaRM()) as client:
        over = await client.post("/v1/score", json={**ITEM, "k_meta": 5})
    async with running_app(FakeEngine()) as client:
        missing = await client.post("/v1/score", json={**ITEM, "k_meta": 2})
    assert over.status_code == 400 and "k_meta = 5 exceeds k = 4" in over.json()["error"]["message"]
    assert missing.status_code == 400 and "no meta RM" in missing.json()["error"]["message"]


async def test_unparseable_samples_are_not_rated_and_never_kept():
    def garbage_first(request):
        return ["no format", *half_trustworthy(request)[1:]]

    meta = FakeMetaRM(trusts_careful)
    async with running_app(FakeEngine(garbage_first), meta_rm=meta) as client:
        body = (await client.post("/v1/score", json=ITEM)).json()
    bad = [s for s in body["samples"] if s["status"] == "unparseable"]
    assert len(bad) == 2 and not any(s["kept"] or s["meta_score"] is not None for s in bad)
    assert meta.calls == [2]
    assert body["responses"][0]["votes"] == 2  # the two careless ones: all that parsed


async def test_info_names_the_meta_rm_and_its_default_k_meta():
    async with running_app(FakeEngine(), meta_rm=FakeMetaRM(), k=8) as client:
        info = (await client.get("/v1/info")).json()
    assert info["meta_rm"] == {"name": "fake", "backend": "fake", "details": {}}
    assert info["defaults"]["k_meta"] == 4


async def test_a_failing_meta_rm_is_a_500_without_internals():
    meta = FakeMetaRM(fail_with=RuntimeError("/secret/path exploded"))
    async with running_app(FakeEngine(), meta_rm=meta) as client:
        r = await client.post("/v1/score", json=ITEM)
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
    assert "/secret" not in r.text


def test_auto_picks_the_embedded_meta_rm_only_for_the_embedded_grm():
    from server.config import Settings

    assert Settings().meta_rm_spec() == "embedded"
    assert Settings(model="/models/other").meta_rm_spec() is None
    assert Settings(meta_rm="none").meta_rm_spec() is None
    assert Settings(model="/models/other", meta_rm="/rm").meta_rm_spec() == "/rm"
