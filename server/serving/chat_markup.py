"""Plain conversations from a policy's chat-templated text (pure, apart from loading a tokenizer).

RL trainers send what the policy saw: OpenRLHF's ``prompts`` are the chat-templated prompt
(``<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n``) and each response ends in its
end-of-turn or EOS token. The GRM must see the user's words and the assistant's answer, not the
policy's markup. A :class:`Markup` recovers the turns:

* ``auto`` (the default) recognises the common templates: ChatML (Qwen, SmolLM, Yi, Hermes, ...),
  Llama 3, Gemma, Mistral (``[INST]``), DeepSeek (V2.5 / V3 / R1) and Phi-3;
* a template's name pins it;
* the policy tokenizer's own chat template gives the exact boundaries, for templates none of the
  above knows (``--policy-tokenizer PATH``, :mod:`server.serving.policy_markup`);
* ``none`` passes text through unchanged.

Nothing is guessed from markers found somewhere in the text. A prompt is a conversation in a template
only when it is one as a whole, as the template renders it:

* it starts with the template's own opening markup, after at most one BOS token of that family
  (ChatML ``<|im_start|>``, Llama 3 ``<|start_header_id|>``, Gemma ``<start_of_turn>``, Mistral
  ``[INST]`` / ``[SYSTEM_PROMPT]``, Phi-3 ``<|system|>`` / ``<|user|>``). DeepSeek's template writes
  the system prompt between its BOS (begin-of-sentence) token and the first User marker, so there the
  BOS is required (its template always writes it): a plain text that merely mentions DeepSeek's User
  and Assistant markers is not a conversation;
* it ends with the template's generation prompt, an open assistant turn (perhaps with text the policy
  was made to begin with, e.g. DeepSeek-R1's ``<think>\\n``: a prefill, kept in front of the response),
  after a user turn.

Responses: only the recognised template's own end tokens (ChatML ``<|im_end|>`` / ``<|endoftext|>``,
Llama 3 ``<|eot_id|>`` / ``<|end_of_text|>`` / ``<|eom_id|>``, ...), and only the run of them (with the
whitespace between) at the very end, are stripped: ``Use <s>old</s><|im_end|>`` becomes ``Use
<s>old</s>``, and an end token inside the text stays. Every markup but ``none`` also trims the
whitespace around a response (a leading space after ``[/INST]`` is tokenisation, not content).

A prompt that is not recognised (``auto`` finds no template, or the pinned template does not match:
no opening markup, stray text before the first turn, a conversation that does not end with the
generation prompt) passes through as one user turn. Its response then:

* under ``auto``, keeps every token (only the surrounding whitespace goes): no template was
  recognised, so none of their tokens is known to be markup;
* under a pinned template (``--chat-markup chatml``, or the one read from ``--policy-tokenizer``),
  loses that template's own end tokens at its very end, as after a recognised prompt: the pin says
  which policy wrote the response, and a policy ends its responses with its end token however its
  prompt was written. Other templates' tokens stay.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from server.pipeline.domain import Message


@dataclass(frozen=True)
class Conversation:
    """A prompt's turns (ending with the user's) and the assistant text the prompt already began."""

    messages: tuple[Message, ...]
    prefill: str = ""  # e.g. DeepSeek-R1's "<think>\n": the start of the response, kept with it
    end_tokens: tuple[str, ...] = ()  # the recognised template's: what its responses may end with

    def response(self, text: str) -> str:
        """A response to this prompt: the prefill put back in front, the template's end tokens removed."""
        return strip_end_run(self.prefill + text, self.end_tokens).strip()


class Markup(Protocol):
    """How one policy's chat template is read back (see the implementations below)."""

    @property
    def name(self) -> str: ...

    def parse(self, prompt: str) -> Conversation | None: ...

    def clean_response(self, text: str, prefill: str = "") -> str:
        """A response to a prompt :meth:`parse` did not read (see the module docstring)."""
        ...


def strip_end_run(text: str, tokens: Sequence[str]) -> str:
    """``text`` without the run of ``tokens`` (and the whitespace around them) it ends with.

    Linear in the text: a rollout that ends in 200,000 end tokens (a policy that never stops, or a
    crafted body) is stripped in milliseconds, before any size limit is checked. Whitespace is
    stripped first at every step, then the first token (in ``tokens`` order) the text ends with.
    """
    tokens = tuple(t for t in tokens if t)
    pattern = _end_run_pattern(tokens)
    if pattern is None:
        return _strip_stepwise(text, tokens)
    run = pattern.match(text[::-1])  # always matches (perhaps nothing)
    return text[: len(text) - run.end()] if run else text


@functools.lru_cache(maxsize=64)
def _end_run_pattern(tokens: tuple[str, ...]) -> re.Pattern[str] | None:
    """A regex matching the run at the start of the reversed text, in one pass with no backtracking
    (possessive); None when one token ends with another.

    Without such a pair at most one token can end the text at each step, so the order tokens are
    tried in cannot matter and the regex strips exactly what :func:`_strip_stepwise` does.
    """
    if any(a != b and a.endswith(b) for a in tokens for b in tokens):
        return None
    alternatives = "".join(f"|{re.escape(t[::-1])}" for t in tokens)
    return re.compile(rf"(?:\s{alternatives})*+")


def _strip_stepwise(text: str, tokens: tuple[str, ...]) -> str:
    """One token at a time, in ``tokens`` order (for token sets where the order matters), moving an
    index instead of copying the rest of the text at each step."""
    end = _rstripped(text, len(text))
    stripped = True
    while stripped:
        stripped = False
        for token in tokens:
            if text.endswith(token, 0, end):
                end = _rstripped(text, end - len(token))
                stripped = True
    return text[:end]


def _rstripped(text: str, end: int) -> int:
    """Where ``text[:end].rstrip()`` ends, copying only the whitespace skipped and a few characters more."""
    while end:
        start = max(0, end - 64)
        kept = len(text[start:end].rstrip())
        if kept:
            return start + kept
        end = start
    return 0


def ends_with_user(turns: list[Message]) -> bool:
    return bool(turns) and turns[-1].role == "user"


@dataclass(frozen=True)
class TurnMarkup:
    """A template whose turns open with a marker naming the role (all the built-in ones).

    Args:
        name: the template family (``chatml``, ``llama3``, ...).
        opener: a regex matching a turn's opening marker; group 1 (or ``roles``) gives the role.
        end_tokens: the template's end-of-turn / EOS tokens: what a response may end with, and what
            closes a turn in a prompt (a policy tokenizer adds its special tokens).
        bos_tokens: the BOS tokens the family's prompts may start with (at most one of them).
        roles: role of the marker text when group 1 is not the role itself (Mistral's ``[INST]``).
        role_names: the template's role names mapped to user/assistant/system (Gemma's ``model``).
        system_before_first_turn: the text between the BOS and the first marker is the system prompt
            (DeepSeek); the BOS is then required, as it is what opens the prompt.
        turn_closers: other tokens that close a turn in a prompt but never end a response (Mistral's
            ``[/SYSTEM_PROMPT]``).
    """

    name: str
    opener: str
    end_tokens: tuple[str, ...]
    bos_tokens: tuple[str, ...] = ()
    roles: dict[str, str] | None = None
    role_names: dict[str, str] | None = None
    system_before_first_turn: bool = False
    turn_closers: tuple[str, ...] = ()

    def parse(self, prompt: str) -> Conversation | None:
        """The conversation of a prompt in this template, or None when it is not one as a whole."""
        body = self._after_bos(prompt)
        if body is None:
            return None
        markers = list(re.finditer(self.opener, body))
        if not markers:
            return None
        closers = (*self.end_tokens, *self.turn_closers)
        turns: list[Message] = []
        if self.system_before_first_turn:
            system = strip_end_run(body[: markers[0].start()], closers).strip()
            if system:
                turns.append(Message("system", system))
        elif markers[0].start() != 0:
            return None  # stray text before the first turn: not a prompt in this template
        for i, m in enumerate(markers):
            role = self._role(m)
            if role is None:
                return None
            end = markers[i + 1].start() if i + 1 < len(markers) else len(body)
            raw = body[m.end() : end]
            if i == len(markers) - 1:
                # The prompt must end with the generation prompt: an open assistant turn, perhaps with
                # text the policy was made to begin with (a prefill), not a finished turn.
                if role != "assistant" or strip_end_run(raw, closers) != raw.rstrip() or not ends_with_user(turns):
                    return None
                return Conversation(tuple(turns), raw.lstrip(), self.end_tokens)
            turns.append(Message(role, strip_end_run(raw, closers).strip()))
        return None

    def clean_response(self, text: str, prefill: str = "") -> str:
        """A response without this template's end tokens at its very end, with a prefill put back in front."""
        return strip_end_run(prefill + text, self.end_tokens).strip()

    def _after_bos(self, prompt: str) -> str | None:
        """The prompt after its optional BOS (required with a system prompt before the first turn)."""
        for bos in self.bos_tokens:
            if prompt.startswith(bos):
                return prompt[len(bos) :]
        return None if self.system_before_first_turn else prompt

    def _role(self, match: re.Match[str]) -> str | None:
        if self.roles is not None:
            return self.roles.get(match.group(0).strip())
        role = match.group(1)
        if self.role_names is not None:
            role = self.role_names.get(role, role)
        return role if role in ("system", "user", "assistant") else None


# Each family's tokens as its tokenizer and chat template write them.
BUILTIN: dict[str, TurnMarkup] = {
    m.name: m
    for m in (
        TurnMarkup(
            "chatml",
            r"<\|im_start\|>(\w+)\n?",
            end_tokens=("<|im_end|>", "<|endoftext|>"),
            # Qwen's has none; Yi's, and those of the Mistral / Llama 3 bases ChatML fine-tunes
            # (OpenHermes, Hermes 2 Pro / 3, Dolphin) whose templates write their bos_token.
            bos_tokens=("<|startoftext|>", "<s>", "<|begin_of_text|>"),
        ),
        TurnMarkup(
            "llama3",
            r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n*",
            end_tokens=("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"),
            bos_tokens=("<|begin_of_text|>",),
        ),
        TurnMarkup(
            "gemma",
            r"<start_of_turn>(\w+)\n?",
            end_tokens=("<end_of_turn>", "<eos>"),
            bos_tokens=("<bos>",),
            role_names={"model": "assistant"},
        ),
        TurnMarkup(
            "mistral",
            r"\[SYSTEM_PROMPT\]|\[INST\]|\[/INST\]",
            end_tokens=("</s>",),
            bos_tokens=("<s>",),
            roles={"[SYSTEM_PROMPT]": "system", "[INST]": "user", "[/INST]": "assistant"},
            # Llama 2's [INST] template writes "</s><s>" between an answer and the next [INST].
            turn_closers=("[/SYSTEM_PROMPT]", "<s>"),
        ),
        TurnMarkup(
            "deepseek",
            r"<｜(User|Assistant)｜>",
            end_tokens=("<｜end▁of▁sentence｜>",),
            bos_tokens=("<｜begin▁of▁sentence｜>",),
            role_names={"User": "user", "Assistant": "assistant"},
            system_before_first_turn=True,
        ),
        TurnMarkup(
            "phi3",
            r"<\|(system|user|assistant)\|>\n?",
            end_tokens=("<|end|>", "<|endoftext|>"),
            bos_tokens=("<s>",),  # the first Phi-3 templates wrote their bos_token
        ),
    )
}

# Every built-in template's end tokens, for :func:`strip_end_tokens` callers that know no template. The
# markups never use it: each strips only its own.
END_TOKENS: tuple[str, ...] = tuple(dict.fromkeys(t for m in BUILTIN.values() for t in m.end_tokens))


def strip_end_tokens(text: str, tokens: Sequence[str] = END_TOKENS) -> str:
    """``text`` without the run of end-of-turn / EOS ``tokens`` (and whitespace) at its very end."""
    return strip_end_run(text, tokens)


@dataclass(frozen=True)
class AutoMarkup:
    """Reads a prompt in whichever built-in template it is written in as a whole; passes it through otherwise."""

    name: str = "auto"

    def parse(self, prompt: str) -> Conversation | None:
        for markup in BUILTIN.values():
            conversation = markup.parse(prompt)
            if conversation is not None:
                return conversation
        return None

    def clean_response(self, text: str, prefill: str = "") -> str:
        """No template recognised: no token is known to be markup, so only the surrounding whitespace goes."""
        return (prefill + text).strip()


@dataclass(frozen=True)
class NoMarkup:
    """``none``: prompts and responses are taken as they are."""

    name: str = "none"

    def parse(self, prompt: str) -> Conversation | None:
        return None

    def clean_response(self, text: str, prefill: str = "") -> str:
        return prefill + text


def to_conversation(markup: Markup, prompt: str, response: str) -> tuple[tuple[Message, ...], str]:
    """The plain turns of a templated prompt and the response's own text; unparsed prompts pass through.

    A recognised prompt's response loses its template's end tokens; a response to a prompt that was not
    recognised is cleaned by the markup itself (see the module docstring).
    """
    conversation = markup.parse(prompt)
    if conversation is None:
        return (Message("user", prompt),), markup.clean_response(response)
    return conversation.messages, conversation.response(response)
