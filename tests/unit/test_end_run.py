"""Stripping a response's end-token run is linear and strips exactly what the one-token-at-a-time rule
did (review of issue #30, finding 2: a 2 MB run held the event loop 13-18 s)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.serving.chat_markup import BUILTIN, END_TOKENS, strip_end_run


def one_token_at_a_time(text: str, tokens: tuple[str, ...]) -> str:
    """The rule as first written (quadratic: it copies the rest of the text at every token)."""
    text = text.rstrip()
    stripped = True
    while stripped:
        stripped = False
        for token in tokens:
            if token and text.endswith(token):
                text = text[: -len(token)].rstrip()
                stripped = True
    return text


# Small alphabets, so tokens often end texts and each other ("ab" and "b": the order they are tried in matters).
pieces = st.sampled_from(["a", "b", "ab", " ", "\n", "\u3000", "x"])
token_sets = st.lists(st.sampled_from(["a", "b", "ab", "ba", " b", "b ", "", "\n"]), max_size=3).map(tuple)


@settings(max_examples=1000)
@given(st.lists(pieces, max_size=12).map("".join), token_sets)
def test_the_linear_strip_equals_the_one_token_at_a_time_rule(text, tokens):
    assert strip_end_run(text, tokens) == one_token_at_a_time(text, tokens)


@given(st.lists(st.sampled_from([*END_TOKENS, "ok", " ", "\n", "<|im_end"]), max_size=10).map("".join))
def test_the_built_in_templates_strip_as_before(text):
    for tokens in [END_TOKENS, *(m.end_tokens for m in BUILTIN.values())]:
        assert strip_end_run(text, tokens) == one_token_at_a_time(text, tokens)


@pytest.mark.parametrize(
    ("tokens", "run"),
    [(("<|im_end|>", "<|endoftext|>"), "<|im_end|>"), (("</s>", "s>", "<e>"), "<e>")],
    ids=["suffix-free", "a token ends another"],
)
def test_a_run_of_200_000_tokens_is_stripped_in_linear_time(tokens, run):
    text = "red" + (run + "\n") * 200_000  # 2.2 MB with ChatML's tokens
    t0 = time.thread_time()  # this thread's CPU: wall time failed when other jobs held the 2 cores
    assert strip_end_run(text, tokens) == "red"
    assert time.thread_time() - t0 < 1.0  # quadratic, this took 10 s and more
