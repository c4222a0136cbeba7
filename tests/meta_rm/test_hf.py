"""The transformers backend on a tiny randomly initialised Llama classifier built from a config."""

import asyncio

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from meta_rm.base import MetaRMError, Trajectory  # noqa: E402
from meta_rm.hf import HFMetaRM  # noqa: E402
from meta_rm.loading import load_meta_rm  # noqa: E402
from meta_rm.rendering import render_chat  # noqa: E402
from server.engines.model_files import resolve_model  # noqa: E402
from server.pipeline.domain import Message  # noqa: E402
from tests.tiny_models import tiny_llama, word_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    from transformers import LlamaForSequenceClassification

    words = ["[PAD]", "[UNK]", "user", "assistant", ":", "please", "score", "the", "responses", ".", "#", "response"]
    tokenizer = word_tokenizer(words)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
    return tiny_llama(tmp_path_factory.mktemp("tiny-meta-rm"), LlamaForSequenceClassification, tokenizer, num_labels=1)


def trajectory(output: str) -> Trajectory:
    return Trajectory((Message("user", "please score"),), ("the response", "response"), output, (9, 2))


def test_scores_are_the_classifier_logit_of_the_rendered_chat(tiny_classifier):
    rm = load_meta_rm(str(tiny_classifier), device="cpu")
    assert isinstance(rm, HFMetaRM)
    ts = [trajectory("the response . score"), trajectory("please please #")]

    async def go():
        await rm.start()
        return await rm.score(ts)

    scores = asyncio.run(go())
    # The same number straight from transformers, one text at a time (no padding involved).
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    for t, got in zip(ts, scores, strict=True):
        ids = tok(
            tok.apply_chat_template(render_chat(t), tokenize=False), return_tensors="pt", add_special_tokens=False
        )
        with torch.inference_mode():
            expected = float(model(**ids).logits[0, 0])
        assert got == pytest.approx(expected, abs=1e-4)
    assert scores[0] != scores[1]


def test_not_started_and_unknown_models_are_clear_errors(tmp_path):
    with pytest.raises(MetaRMError, match="not been started"):
        asyncio.run(HFMetaRM(str(tmp_path), "x").score([trajectory("a")]))
    with pytest.raises(MetaRMError, match="not in the local Hugging Face cache"):
        load_meta_rm("no-such-org/no-such-meta-rm", resolve=lambda name: resolve_model(name, tmp_path))
    with pytest.raises(MetaRMError, match="is not a folder"):
        load_meta_rm("no-such-org/no-such-meta-rm")  # no resolver: only folders
    with pytest.raises(MetaRMError, match=r"has no meta_rm\.json \(linear\) or config\.json"):
        load_meta_rm(str(tmp_path))
