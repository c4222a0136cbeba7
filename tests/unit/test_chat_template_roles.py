"""A judge's custom chat roles through the vLLM engine's tokenization (``encode_chat``), without vLLM.

Nemotron GenRM's prompt is a chat with roles ``principle``, ``response_1`` and ``response_2`` that the
served model's own template renders. A template that renders any role (ChatML, as the embedded
SmolLM2's) passes them through; one that refuses them or silently drops them must fail by name.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from server.engines.base import ChatTemplateError, GenerationRequest
from server.engines.chat_encoding import encode_chat, render_chat
from server.pipeline.domain import Message
from server.pipeline.judges import NemotronGenRM
from tests.tiny_models import word_tokenizer

# The embedded model's template, byte for byte: SmolLM2-135M-Instruct's chat_template.jinja as
# grm-serve converts it (~/.cache/grm-serve/smollm2-135m-instruct-bf16, server/engines/model_files.py).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A template that knows only the standard roles and skips any other turn (as Qwen3's does).
STANDARD_ONLY = (
    "{% for m in messages %}{% if m['role'] in ['system', 'user', 'assistant'] %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
)
REFUSING = (
    "{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Conversation roles must be user, assistant or system') }}{% endif %}"
    "{{ m['content'] }}{% endfor %}"
)
WORDS = ["[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>", "Q", "A", "B", "brief"]


def request() -> GenerationRequest:
    prompt = NemotronGenRM().render([Message("user", "Q")], ["A", "<think>r</think>B"], ["brief"])
    return GenerationRequest(
        "r", prompt.user, n=1, temperature=0.6, top_p=0.95, max_tokens=64, messages=prompt.messages
    )


def tokenizer(template: str):
    tok = word_tokenizer(WORDS)
    tok.chat_template = template
    return tok


def test_chatml_renders_the_judges_roles_verbatim():
    text = render_chat(tokenizer(SMOLLM2_TEMPLATE), request())
    assert text.endswith(
        "<|im_start|>user\nQ<|im_end|>\n<|im_start|>principle\nbrief<|im_end|>\n"
        "<|im_start|>response_1\nA<|im_end|>\n<|im_start|>response_2\nB<|im_end|>\n<|im_start|>assistant\n"
    )
    assert len(encode_chat(tokenizer(SMOLLM2_TEMPLATE), request())) > 0


def test_a_template_that_drops_a_custom_role_fails_by_name():
    with pytest.raises(ChatTemplateError, match="dropped the 'principle' turn"):
        encode_chat(tokenizer(STANDARD_ONLY), request())


def test_a_template_that_refuses_a_custom_role_fails_with_its_own_message():
    with pytest.raises(
        ChatTemplateError, match=r"roles: user, principle, response_1, response_2\): Conversation roles must be user"
    ):
        encode_chat(tokenizer(REFUSING), request())


def test_standard_chats_are_not_checked_for_custom_roles():
    plain = GenerationRequest("r", "Q", n=1, temperature=0.5, top_p=1.0, max_tokens=64)
    assert render_chat(tokenizer(STANDARD_ONLY), plain) == "<|im_start|>user\nQ<|im_end|>\n"


def test_render_text_is_what_generate_sends_the_model():
    """/v1/render on vLLM: the chat template's text and the token count of exactly what encode_chat sends."""
    from server.engines.chat_encoding import render_text

    tok = tokenizer(SMOLLM2_TEMPLATE)
    out = render_text(tok, request())
    assert out.exact and out.text == render_chat(tok, request())
    assert out.prompt_tokens == len(encode_chat(tok, request()))
    raw = GenerationRequest("r", "Q A B", n=1, temperature=0.0, top_p=1.0, max_tokens=64, raw=True)
    assert render_text(tok, raw).text == "Q A B"
    assert render_text(tok, raw).prompt_tokens == len(encode_chat(tok, raw))


async def test_the_vllm_engine_renders_with_its_tokenizer_without_generating():
    from types import SimpleNamespace

    from server.engines.vllm import VLLMEngine

    engine = VLLMEngine("unused", "grm")
    engine._llm = SimpleNamespace(errored=False)  # a started engine, as far as render is concerned
    engine._tokenizer = tokenizer(SMOLLM2_TEMPLATE)
    out = await engine.render(request())
    assert out.text is not None and out.text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ChatTemplateError):
        engine._tokenizer = tokenizer(STANDARD_ONLY)
        await engine.render(request())
