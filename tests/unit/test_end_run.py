"""Stripping a response's end-token run is linear and strips exactly what the one-token-at-a-time rule
did (review of issue #30, finding 2: a 2 MB run held the event loop 13-18 s)."""

from __future__ import annotations

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


class CountedStr(str):
    """A string that counts the characters its slices and strips copy (into :attr:`copied`); what they
    return counts on. Stripping copy by copy is what made the rule quadratic: the rest of the text at
    every token."""

    copied = 0

    def _counted(self, out: str) -> CountedStr:
        CountedStr.copied += len(out)
        return CountedStr(out)

    def __getitem__(self, key):  # type: ignore[override]
        return self._counted(str.__getitem__(self, key))

    def rstrip(self, chars=None):  # type: ignore[override]
        return self._counted(str.rstrip(self, chars))

    def strip(self, chars=None):  # type: ignore[override]
        return self._counted(str.strip(self, chars))


def characters_copied(text: str, tokens: tuple[str, ...]) -> int:
    CountedStr.copied = 0
    assert strip_end_run(CountedStr(text), tokens) == "red"
    return CountedStr.copied


RUNS = [(("<|im_end|>", "<|endoftext|>"), "<|im_end|>"), (("</s>", "s>", "<e>"), "<e>")]


@pytest.mark.parametrize(("tokens", "run"), RUNS, ids=["suffix-free", "a token ends another"])
def test_a_run_of_end_tokens_is_stripped_copying_a_bounded_number_of_characters_per_character(tokens, run):
    """A 2 MB run held the event loop 10 s and more when each token stripped copied the rest of the
    text. Counted, not timed, at two lengths: the text once (reversed for the regex) and per token
    at most the two 64-character windows the stepwise rule looks at (:func:`_rstripped`); the
    quadratic rule copied about the whole text per token, 1,000 times the text at 1,000 tokens.
    (The regex's match is C work this does not count: it is possessive, one pass.)"""
    for tokens_in_run in (1_000, 2_000):
        text = "red" + (run + "\n") * tokens_in_run
        assert characters_copied(text, tokens) <= len(text) + 2 * 64 * tokens_in_run
