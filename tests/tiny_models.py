"""Tiny randomly initialised Hugging Face models built from a config, for tests (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def word_tokenizer(words: list[str], **special: Any) -> Any:
    """A fast word-level tokenizer over ``words`` (``[PAD]`` and ``[UNK]`` must be among them)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", **special)


def tiny_llama(folder: Path, model_class: Any, tokenizer: Any, **config: Any) -> Path:
    """Save a one-layer Llama of ``model_class`` (seeded) and ``tokenizer`` to ``folder``."""
    import torch
    from transformers import LlamaConfig

    torch.manual_seed(0)
    shape = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    shape |= {"num_attention_heads": 2, "num_key_value_heads": 1}
    model_class(LlamaConfig(vocab_size=len(tokenizer), pad_token_id=0, **{**shape, **config})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
