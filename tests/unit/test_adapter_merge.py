"""``--adapter``: a peft LoRA adapter merged onto the base once, cached by content, refused when it does not fit."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft")

from server.engines import adapters
from server.engines.adapters import AdapterError, merged_model, read_adapter
from tests.tiny_models import tiny_llama, word_tokenizer

WORDS = ["[PAD]", "[UNK]", "</s>", *(f"w{i}" for i in range(29))]


def base_model(folder, **config):
    from transformers import LlamaForCausalLM

    return tiny_llama(folder, LlamaForCausalLM, word_tokenizer(WORDS, eos_token="</s>"), **config)


def lora(base, folder, seed=1, r=2):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), LoraConfig(r=r, init_lora_weights=False))
    model.save_pretrained(folder)
    return model


def logits(model):
    import torch

    with torch.no_grad():
        return model(torch.tensor([[3, 5, 7, 11]])).logits


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return base_model(tmp_path_factory.mktemp("base"))


def test_the_merged_model_computes_what_the_adapted_model_does(base, tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    adapted = lora(base, tmp_path / "adapter")
    folder, info = merged_model(base, tmp_path / "adapter", tmp_path / "cache")
    merged = LlamaForCausalLM.from_pretrained(folder)
    assert torch.allclose(logits(merged), logits(adapted), atol=1e-5)
    assert not torch.allclose(logits(merged), logits(LlamaForCausalLM.from_pretrained(base)), atol=1e-3)
    assert (info.peft_type, info.rank, info.name) == ("LORA", 2, "adapter")


def test_a_second_start_reuses_the_merged_folder(base, tmp_path, monkeypatch):
    lora(base, tmp_path / "adapter")
    first, _ = merged_model(base, tmp_path / "adapter", tmp_path / "cache")
    monkeypatch.setattr(adapters, "_merge", lambda *a: pytest.fail("merged again"))
    assert merged_model(base, tmp_path / "adapter", tmp_path / "cache")[0] == first


def test_another_adapter_content_gets_another_folder(base, tmp_path):
    lora(base, tmp_path / "adapter")
    first, info1 = merged_model(base, tmp_path / "adapter", tmp_path / "cache")
    lora(base, tmp_path / "adapter", seed=2)  # retrained into the same folder
    second, info2 = merged_model(base, tmp_path / "adapter", tmp_path / "cache")
    assert first != second and info1.sha256 != info2.sha256


def test_a_folder_that_is_not_a_peft_adapter_is_refused(base, tmp_path):
    with pytest.raises(AdapterError, match="not a folder"):
        read_adapter(tmp_path / "missing")
    with pytest.raises(AdapterError, match="not a peft adapter"):
        read_adapter(base)  # a model folder, not an adapter
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps({"r": 2}))
    (tmp_path / "bad" / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(AdapterError, match="no peft_type"):
        read_adapter(tmp_path / "bad")


@pytest.mark.parametrize(
    ("shape", "why"), [({"hidden_size": 32}, "size mismatch"), ({"num_hidden_layers": 2}, "without adapter weights")]
)
def test_an_adapter_for_another_model_is_refused_by_name(base, tmp_path, shape, why):
    lora(base, tmp_path / "adapter")
    other = base_model(tmp_path / "other", **shape)
    with pytest.raises(AdapterError, match=f"does not fit the base model other: .*{why}"):
        merged_model(other, tmp_path / "adapter", tmp_path / "cache")
    assert not any(p.name.endswith("-partial") for p in (tmp_path / "cache" / "merged").iterdir())


def test_grm_serve_stops_with_a_message_when_the_adapter_does_not_fit(base, tmp_path):
    from server.cli import merge_adapter
    from server.config import Settings

    lora(base, tmp_path / "adapter")
    other = base_model(tmp_path / "other", hidden_size=32)
    settings = Settings(model=str(other), adapter=tmp_path / "adapter", cache_dir=tmp_path / "cache")
    assert "does not fit the base model other" in (merge_adapter(settings) or "")
    assert merge_adapter(settings.model_copy(update={"model": str(base)})) is None


def test_a_small_update_survives_the_merge_of_a_bf16_base(tmp_path):
    """A LoRA update below bf16's resolution (as after a short fine-tune) is kept exactly: the merged weights
    are stored in float32, while the config still declares the base's dtype."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    base = base_model(tmp_path / "base")
    LlamaForCausalLM.from_pretrained(base).to(torch.bfloat16).save_pretrained(base)  # a bf16 checkpoint
    torch.manual_seed(1)
    peft_model = get_peft_model(
        LlamaForCausalLM.from_pretrained(base, dtype=torch.float32), LoraConfig(r=2, init_lora_weights=False)
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(1e-3)
    peft_model.save_pretrained(tmp_path / "adapter")
    exact = peft_model.merge_and_unload().state_dict()
    folder, _ = merged_model(base, tmp_path / "adapter", tmp_path / "cache")
    saved = load_file(folder / "model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert saved[q].dtype == torch.float32 and torch.equal(saved[q], exact[q])
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"


def test_grm_eval_stops_with_a_message_when_the_adapter_does_not_fit(base, tmp_path, capsys):
    from grm_eval.cli import main
    from tests.conftest import shared_file

    lora(base, tmp_path / "adapter")
    other = base_model(tmp_path / "other", hidden_size=32)
    argv = ["--data", str(shared_file("data", "smoke.jsonl")), "--limit", "1", "--out", str(tmp_path / "out")]
    argv += ["--model", str(other), "--adapter", str(tmp_path / "adapter"), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not fit the base model other" in err and "Traceback" not in err
