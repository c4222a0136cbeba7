"""Plain turns from policies' chat-templated prompts (server/chat_markup.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.chat_markup import (
    AutoMarkup,
    BoundaryMarkup,
    NoMarkup,
    get_markup,
    markup_from_tokenizer,
    strip_end_tokens,
    to_conversation,
)
from server.domain import Message

SYS, Q1, A1, Q2 = "Be brief.", "What is 2+2?", "4.", "And 3+3?"
CONVERSATION = (Message("system", SYS), Message("user", Q1), Message("assistant", A1), Message("user", Q2))

# What each family's own chat template renders for CONVERSATION with add_generation_prompt=True, and
# how a response generated after it ends (the text OpenRLHF decodes with skip_special_tokens=False).
RENDERED = {
    "chatml": (
        f"<|im_start|>system\n{SYS}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n{A1}"
        f"<|im_end|>\n<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n",
        "6.<|im_end|>",
    ),
    "llama3": (
        f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYS}<|eot_id|><|start_header_id|>user"
        f"<|end_header_id|>\n\n{Q1}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{A1}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{Q2}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "6.<|eot_id|>",
    ),
    "deepseek": (
        f"<｜begin▁of▁sentence｜>{SYS}<｜User｜>{Q1}<｜Assistant｜>{A1}<｜end▁of▁sentence｜><｜User｜>{Q2}<｜Assistant｜>",
        "6.<｜end▁of▁sentence｜>",
    ),
    "phi3": (
        f"<|system|>\n{SYS}<|end|>\n<|user|>\n{Q1}<|end|>\n<|assistant|>\n{A1}<|end|>\n<|user|>\n{Q2}<|end|>\n"
        "<|assistant|>\n",
        "6.<|end|><|endoftext|>",
    ),
}


@pytest.mark.parametrize("family", sorted(RENDERED))
def test_common_templates_are_read_back_as_plain_turns(family):
    prompt, response = RENDERED[family]
    for markup in (AutoMarkup(), get_markup(family)):
        messages, text = to_conversation(markup, prompt, response)
        assert messages == CONVERSATION, family
        assert text == "6."


def test_gemma_has_no_system_turn_and_calls_the_assistant_model():
    prompt = (
        f"<bos><start_of_turn>user\n{Q1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
        f"<start_of_turn>user\n{Q2}<end_of_turn>\n<start_of_turn>model\n"
    )
    messages, text = to_conversation(AutoMarkup(), prompt, "6.<end_of_turn><eos>")
    assert messages == CONVERSATION[1:]
    assert text == "6."


def test_mistral_inst_markup():
    prompt = f"<s>[INST] {Q1} [/INST] {A1}</s>[INST] {Q2} [/INST]"
    messages, text = to_conversation(AutoMarkup(), prompt, " 6.</s>")
    assert messages == CONVERSATION[1:]
    assert text == "6."
    newer = f"<s>[SYSTEM_PROMPT]{SYS}[/SYSTEM_PROMPT][INST]{Q1}[/INST]{A1}</s>[INST]{Q2}[/INST]"
    assert to_conversation(AutoMarkup(), newer, "6.</s>")[0] == CONVERSATION


def test_a_prefilled_generation_prompt_stays_with_the_response():
    prompt = f"<｜begin▁of▁sentence｜><｜User｜>{Q1}<｜Assistant｜><think>\n"
    messages, text = to_conversation(AutoMarkup(), prompt, "2 and 2.</think>4.<｜end▁of▁sentence｜>")
    assert messages == (Message("user", Q1),)
    assert text == "<think>\n2 and 2.</think>4."


@pytest.mark.parametrize(
    "prompt",
    [
        "What does <|im_start|> mean in ChatML?",  # stray text before the first marker
        f"<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n{A1}<|im_end|>\n",  # ends with the assistant
        "[INST] is a tag",
        "plain prompt, no markup",
    ],
)
def test_text_that_is_not_a_whole_templated_prompt_passes_through(prompt):
    messages, text = to_conversation(AutoMarkup(), prompt, " answer<|im_end|>")
    assert messages == (Message("user", prompt),)
    assert text == "answer"  # end-of-turn tokens go whatever the prompt was


def test_none_passes_everything_through():
    prompt, response = RENDERED["chatml"]
    assert to_conversation(NoMarkup(), prompt, response) == ((Message("user", prompt),), response)
    assert to_conversation(get_markup("none"), prompt, response)[1] == response


def test_a_pinned_template_does_not_read_another():
    prompt, _ = RENDERED["llama3"]
    assert to_conversation(get_markup("chatml"), prompt, "x")[0] == (Message("user", prompt),)


def test_strip_end_tokens_only_at_the_end():
    assert strip_end_tokens("a <|im_end|> b<|im_end|>\n<|endoftext|>") == "a <|im_end|> b"
    assert strip_end_tokens("</s>x") == "</s>x"


def test_unknown_markup_name_is_refused():
    with pytest.raises(ValueError, match="unknown chat markup 'vicuna'"):
        get_markup("vicuna")


# ---- the policy's own tokenizer (--policy-tokenizer) ----------------------------------------------

# A template none of the built-ins knows: role tags in brackets, turns separated by "|||".
CUSTOM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}<<SYS>>{{ m['content'] }}<</SYS>>"
    "{% elif m['role'] == 'user' %}[[Human]] {{ m['content'] }} |||{% else %}[[Bot]] {{ m['content'] }}"
    "{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}[[Bot]] {% endif %}"
)


def _tokenizer(folder: Path, template: str) -> Path:
    pytest.importorskip("transformers")
    from tests.tiny_models import word_tokenizer

    tok = word_tokenizer(["[PAD]", "[UNK]", "<start>", "<stop>"], bos_token="<start>", eos_token="<stop>")
    tok.chat_template = template
    tok.save_pretrained(folder)
    return folder


def test_a_custom_tokenizer_template_is_read_from_its_boundaries(tmp_path):
    markup = markup_from_tokenizer(_tokenizer(tmp_path, CUSTOM_TEMPLATE))
    assert isinstance(markup, BoundaryMarkup)
    prompt = f"<start><<SYS>>{SYS}<</SYS>>[[Human]] {Q1} |||[[Bot]] {A1}<stop>[[Human]] {Q2} |||[[Bot]] "
    messages, text = to_conversation(markup, prompt, "6.<stop>")
    assert messages == CONVERSATION
    assert text == "6."
    no_system = f"<start>[[Human]] {Q1} |||[[Bot]] "
    assert to_conversation(markup, no_system, "x")[0] == (Message("user", Q1),)
    assert to_conversation(markup, "not the template", "x")[0] == (Message("user", "not the template"),)


def test_a_tokenizer_with_a_known_template_pins_it(tmp_path):
    chatml = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    markup = markup_from_tokenizer(_tokenizer(tmp_path, chatml))
    assert markup.name == "chatml"
    prompt, _ = RENDERED["chatml"]
    assert to_conversation(markup, prompt, "6.<stop>") == (CONVERSATION, "6.")  # its own EOS is stripped too


def test_a_tokenizer_without_a_chat_template_is_refused(tmp_path):
    pytest.importorskip("transformers")
    from tests.tiny_models import word_tokenizer

    word_tokenizer(["[PAD]", "[UNK]"]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no chat template"):
        markup_from_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="cannot load the policy tokenizer"):
        markup_from_tokenizer(tmp_path / "missing")


def test_the_settings_offer_every_markup():
    import typing

    from server.chat_markup import MARKUP_CHOICES
    from server.config import Settings

    assert set(typing.get_args(Settings.model_fields["chat_markup"].annotation)) == set(MARKUP_CHOICES)
