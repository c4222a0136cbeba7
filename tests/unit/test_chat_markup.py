"""Plain turns from policies' chat-templated prompts (server/serving/chat_markup.py, policy_markup.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.pipeline.domain import Message
from server.serving.chat_markup import BUILTIN, AutoMarkup, NoMarkup, strip_end_tokens, to_conversation
from server.serving.policy_markup import BoundaryMarkup, get_markup, markup_from_tokenizer

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
    assert text == "answer<|im_end|>"  # not recognised: no template's tokens are taken for markup


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

    from server.config import Settings
    from server.serving.policy_markup import MARKUP_CHOICES

    assert set(typing.get_args(Settings.model_fields["chat_markup"].annotation)) == set(MARKUP_CHOICES)


# ---- nothing is guessed: only a whole templated prompt is a conversation, only its own end tokens go ---


@pytest.mark.parametrize(
    "prompt",
    ["Explain what <｜User｜>hi<｜Assistant｜> means", "Explain what <｜User｜>hi<｜Assistant｜>"],
)
def test_a_plain_prompt_mentioning_deepseek_markers_is_one_user_turn_with_the_response_untouched(prompt):
    response = "They mark the turns.<｜end▁of▁sentence｜>"
    assert to_conversation(AutoMarkup(), prompt, response) == ((Message("user", prompt),), response)


@pytest.mark.parametrize("markup", [AutoMarkup(), get_markup("chatml")], ids=["auto", "chatml"])
def test_a_chatml_response_loses_only_its_own_end_token(markup):
    prompt, _ = RENDERED["chatml"]
    assert to_conversation(markup, prompt, "Use <s>old</s><|im_end|>") == (CONVERSATION, "Use <s>old</s>")


def test_an_end_token_inside_a_response_is_kept():
    prompt, _ = RENDERED["chatml"]
    response = "Qwen ends a turn with <|im_end|> and Llama 3 with <|eot_id|>\n<|im_end|>"
    text = to_conversation(AutoMarkup(), prompt, response)[1]
    assert text == "Qwen ends a turn with <|im_end|> and Llama 3 with <|eot_id|>"


@pytest.mark.parametrize("stray", ["Summarise this chat log: ", "<bos>", "<s><s>", "\n"])
def test_stray_text_before_the_first_chatml_turn_is_not_a_conversation(stray):
    prompt = f"{stray}<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n"
    assert get_markup("chatml").parse(prompt) is None
    assert to_conversation(AutoMarkup(), prompt, "4.<|im_end|>") == ((Message("user", prompt),), "4.<|im_end|>")


def test_a_deepseek_prompt_needs_its_bos():
    with_bos = f"<｜begin▁of▁sentence｜>{SYS}<｜User｜>{Q1}<｜Assistant｜>"
    assert to_conversation(AutoMarkup(), with_bos, "4.")[0] == (Message("system", SYS), Message("user", Q1))
    assert AutoMarkup().parse(with_bos.removeprefix("<｜begin▁of▁sentence｜>")) is None


def test_a_pinned_template_strips_only_its_own_end_tokens_even_from_a_prompt_it_cannot_read():
    prompt = "A plain prompt, not ChatML"
    messages, text = to_conversation(get_markup("chatml"), prompt, "Use <s>old</s><|im_end|>\n<|endoftext|>")
    assert messages == (Message("user", prompt),)
    assert text == "Use <s>old</s>"


# Every token a built-in template writes: text holding none of them is no template's markup.
MARKERS = (
    *("<|startoftext|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"),  # ChatML
    *("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"),
    *("<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>"),  # Gemma
    *("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),  # Mistral
    *("<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"),  # DeepSeek
    *("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),  # Phi-3
)
# Plain text, with pieces of markers (and whitespace) mixed in so that near misses get tried too.
NEAR_MISSES = ["<|", "|>", "<｜", "｜>", "<s", "</", "[INST", "[/INST", "im_start", "User", "Assistant", "\n", " "]
PLAIN_TEXT = (
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from(NEAR_MISSES)), max_size=12)
    .map("".join)
    .filter(lambda t: not any(marker in t for marker in MARKERS))
)


@settings(max_examples=300, deadline=None)
@given(PLAIN_TEXT)
def test_text_without_markers_is_never_a_conversation_and_its_response_is_only_trimmed(text):
    for markup in (AutoMarkup(), *BUILTIN.values()):
        assert markup.parse(text) is None
        assert to_conversation(markup, text, text) == ((Message("user", text),), text.strip())


# Text that mentions markers anywhere but at its start: plain text and whole markers, in any order.
MENTIONS = (
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from([*NEAR_MISSES, *MARKERS])), min_size=1, max_size=12)
    .map("".join)
    .filter(lambda t: not t.startswith(MARKERS))
)


@settings(max_examples=300, deadline=None)
@given(MENTIONS)
@example("Explain what <｜User｜>hi<｜Assistant｜> means")
@example("Close with </s><|im_end|>")
def test_text_that_does_not_open_with_a_templates_markup_is_never_a_conversation(text):
    for markup in (AutoMarkup(), *BUILTIN.values()):
        assert markup.parse(text) is None
    assert to_conversation(AutoMarkup(), text, text) == ((Message("user", text),), text.strip())


def test_a_tokenizer_template_that_writes_its_bos_is_a_builtin_and_its_bos_never_ends_a_response(tmp_path):
    chatml = (
        "{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
        "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    markup = markup_from_tokenizer(_tokenizer(tmp_path, chatml))
    assert markup.name == "chatml"
    prompt, _ = RENDERED["chatml"]
    assert to_conversation(markup, "<start>" + prompt, "Use <start><stop>") == (CONVERSATION, "Use <start>")
