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


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_chatml_tokenizer(folder: Path) -> Path:
    """Save a byte-level tokenizer (one token per byte, no merges: decoding gives back the exact text)
    with ChatML's special tokens and chat template to ``folder``, as a policy's tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, [], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(folder)
    return folder
