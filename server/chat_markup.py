"""Plain conversations from a policy's chat-templated text (pure, apart from loading a tokenizer).

RL trainers send what the policy saw: OpenRLHF's ``prompts`` are the chat-templated prompt
(``<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n``) and each response ends in its
end-of-turn or EOS token. The GRM must see the user's words and the assistant's answer, not the
policy's markup. A :class:`Markup` recovers the turns:

* ``auto`` (the default) recognises the common templates by their markers: ChatML (Qwen, SmolLM,
  Yi, ...), Llama 3, Gemma, Mistral (``[INST]``), DeepSeek (V2.5 / V3 / R1) and Phi-3;
* a template's name pins it;
* :func:`markup_from_tokenizer` derives the exact boundaries from the policy tokenizer's own chat
  template, for templates none of the above knows (``--policy-tokenizer PATH``);
* ``none`` passes text through unchanged.

A text that does not parse as a whole (no markers, stray text before the first turn, a conversation
that does not end with the user's turn) is passed through as one user turn: nothing is guessed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from server.domain import Message

# Special tokens that start a sequence or end a turn in the common templates. Leading ones are
# dropped before the first turn; trailing ones (with the whitespace between them) end a response.
BOS_TOKENS = ("<|begin_of_text|>", "<bos>", "<s>", "<｜begin▁of▁sentence｜>", "<|startoftext|>")
END_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<eos>",
    "</s>",
    "<｜end▁of▁sentence｜>",
    "<|end|>",
    "[/SYSTEM_PROMPT]",
)


@dataclass(frozen=True)
class Conversation:
    """A prompt's turns (ending with the user's) and the assistant text the prompt already began."""

    messages: tuple[Message, ...]
    prefill: str = ""  # e.g. DeepSeek-R1's "<think>\n": the start of the response, kept with it


class Markup(Protocol):
    """How one policy's chat template is read back (see the implementations below)."""

    @property
    def name(self) -> str: ...

    def parse(self, prompt: str) -> Conversation | None: ...

    def clean_response(self, text: str, prefill: str = "") -> str: ...


def _strip_tokens(text: str, tokens: Sequence[str], *, at_end: bool) -> str:
    """``text`` without the tokens (and whitespace) it ends with (``at_end``) or starts with."""
    text = text.rstrip() if at_end else text.lstrip()
    stripped = True
    while stripped:
        stripped = False
        for token in tokens:
            if token and at_end and text.endswith(token):
                text = text[: -len(token)].rstrip()
                stripped = True
            elif token and not at_end and text.startswith(token):
                text = text[len(token) :].lstrip()
                stripped = True
    return text


def strip_end_tokens(text: str, tokens: Sequence[str] = END_TOKENS) -> str:
    """``text`` without the end-of-turn / EOS tokens (and whitespace) it ends with."""
    return _strip_tokens(text, tokens, at_end=True)


def _ends_with_user(turns: list[Message]) -> bool:
    return bool(turns) and turns[-1].role == "user" and any(t.role == "user" for t in turns)


@dataclass(frozen=True)
class TurnMarkup:
    """A template whose turns open with a marker naming the role (all the built-in ones).

    Args:
        name: the template family (``chatml``, ``llama3``, ...).
        opener: a regex matching a turn's opening marker; group 1 (or ``roles``) gives the role.
        roles: role of the marker text when group 1 is not the role itself (Mistral's ``[INST]``).
        role_names: the template's role names mapped to user/assistant/system (Gemma's ``model``).
        signature: text whose presence makes ``auto`` try this template.
        system_before_first_turn: text before the first marker is the system prompt (DeepSeek).
        end_tokens: what a response may end with (a policy tokenizer adds its special tokens).
    """

    name: str
    opener: str
    signature: str
    roles: dict[str, str] | None = None
    role_names: dict[str, str] | None = None
    system_before_first_turn: bool = False
    end_tokens: tuple[str, ...] = END_TOKENS

    def parse(self, prompt: str) -> Conversation | None:
        """The conversation of a prompt in this template, or None when it is not one as a whole."""
        markers = list(re.finditer(self.opener, prompt))
        if not markers:
            return None
        turns: list[Message] = []
        before = _strip_tokens(prompt[: markers[0].start()], BOS_TOKENS, at_end=False)
        if before:
            if not self.system_before_first_turn:
                return None  # stray text: not (only) this template
            turns.append(Message("system", strip_end_tokens(before)))
        for i, m in enumerate(markers):
            role = self._role(m)
            if role is None:
                return None
            end = markers[i + 1].start() if i + 1 < len(markers) else len(prompt)
            raw = prompt[m.end() : end]
            if i == len(markers) - 1:
                # The prompt must end with the generation prompt: an open assistant turn, perhaps with
                # text the policy was made to begin with (a prefill), not a finished turn.
                if role != "assistant" or strip_end_tokens(raw) != raw.rstrip() or not _ends_with_user(turns):
                    return None
                return Conversation(tuple(turns), raw.lstrip())
            turns.append(Message(role, strip_end_tokens(raw).strip()))
        return None

    def clean_response(self, text: str, prefill: str = "") -> str:
        """A response without its end-of-turn / EOS tokens, with the prompt's prefill put back in front."""
        return strip_end_tokens(prefill + text, self.end_tokens).strip()

    def _role(self, match: re.Match[str]) -> str | None:
        if self.roles is not None:
            return self.roles.get(match.group(0).strip())
        role = match.group(1)
        if self.role_names is not None:
            role = self.role_names.get(role, role)
        return role if role in ("system", "user", "assistant") else None


BUILTIN: dict[str, TurnMarkup] = {
    m.name: m
    for m in (
        TurnMarkup("chatml", r"<\|im_start\|>(\w+)\n?", "<|im_start|>"),
        TurnMarkup("llama3", r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n*", "<|start_header_id|>"),
        TurnMarkup("gemma", r"<start_of_turn>(\w+)\n?", "<start_of_turn>", role_names={"model": "assistant"}),
        TurnMarkup(
            "mistral",
            r"\[SYSTEM_PROMPT\]|\[INST\]|\[/INST\]",
            "[INST]",
            roles={"[SYSTEM_PROMPT]": "system", "[INST]": "user", "[/INST]": "assistant"},
        ),
        TurnMarkup(
            "deepseek",
            r"<｜(User|Assistant)｜>",
            "<｜User｜>",
            role_names={"User": "user", "Assistant": "assistant"},
            system_before_first_turn=True,
        ),
        TurnMarkup("phi3", r"<\|(system|user|assistant)\|>\n?", "<|user|>"),
    )
}


@dataclass(frozen=True)
class AutoMarkup:
    """Tries every built-in template whose marker the text holds; passes the text through otherwise."""

    name: str = "auto"

    def parse(self, prompt: str) -> Conversation | None:
        for markup in BUILTIN.values():
            if markup.signature in prompt:
                conversation = markup.parse(prompt)
                if conversation is not None:
                    return conversation
        return None

    def clean_response(self, text: str, prefill: str = "") -> str:
        return strip_end_tokens(prefill + text).strip()


@dataclass(frozen=True)
class NoMarkup:
    """``none``: prompts and responses are taken as they are."""

    name: str = "none"

    def parse(self, prompt: str) -> Conversation | None:
        return None

    def clean_response(self, text: str, prefill: str = "") -> str:
        return prefill + text


@dataclass(frozen=True)
class BoundaryMarkup:
    """A template known only by what it puts between turns, read off a tokenizer (see below).

    A prompt is ``head + U1 + user_to_assistant + A1 + assistant_to_user + U2 + ... + tail``, or
    ``system_head + S + system_to_user + U1 + ...`` with a system prompt.
    """

    name: str
    head: str
    user_to_assistant: str
    assistant_to_user: str
    tail: str
    system_head: str | None = None
    system_to_user: str | None = None
    end_tokens: tuple[str, ...] = END_TOKENS

    def parse(self, prompt: str) -> Conversation | None:
        turns: list[Message] = []
        if self.system_head and self.system_to_user and prompt.startswith(self.system_head):
            rest = prompt[len(self.system_head) :]
            system, found, rest = rest.partition(self.system_to_user)
            if not found:
                return None
            turns.append(Message("system", system.strip()))
        elif prompt.startswith(self.head):
            rest = prompt[len(self.head) :]
        else:
            return None
        if not rest.endswith(self.tail):
            return None
        rest = rest[: len(rest) - len(self.tail)]
        separators = {self.user_to_assistant: "assistant", self.assistant_to_user: "user"}
        pieces = re.split("(" + "|".join(map(re.escape, separators)) + ")", rest)
        role = "user"
        for i in range(0, len(pieces), 2):
            turns.append(Message(role, pieces[i].strip()))
            if i + 1 < len(pieces):
                following = separators[pieces[i + 1]]
                if following == role:
                    return None
                role = following
        if not _ends_with_user(turns):
            return None
        return Conversation(tuple(turns))

    def clean_response(self, text: str, prefill: str = "") -> str:
        return strip_end_tokens(prefill + text, self.end_tokens).strip()


_SENTINELS = ("GRMSERVESYSTEMX", "GRMSERVEUSERX", "GRMSERVEASSISTANTX", "GRMSERVEFINALUSERX")


@functools.cache  # the CLI checks it before the app is built, which uses it
def markup_from_tokenizer(path: Path) -> Markup:
    """The markup of a policy tokenizer's chat template (``--policy-tokenizer``), from a local folder.

    The template renders a probe conversation of sentinel words; the text between them is what the
    template puts between turns. If a built-in template reads the probe back exactly, that one is used
    (it tolerates whitespace variants), with the tokenizer's special tokens as end tokens; otherwise the
    boundaries themselves are.

    Raises:
        ValueError: when transformers is missing, the folder holds no tokenizer with a chat template, or
            the template does not render a user / assistant / user conversation.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ValueError("--policy-tokenizer needs transformers (installed with the cpu or gpu extra)") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load the policy tokenizer from {path}: {exc}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the policy tokenizer in {path} has no chat template")
    system, user, assistant, final = _SENTINELS
    turns = [
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": final},
    ]
    probe = _render(tokenizer, turns)
    if probe is None or not all(s in probe for s in (user, assistant, final)):
        raise ValueError(f"the chat template of {path} does not render a user/assistant/user conversation")
    end_tokens = tuple(dict.fromkeys([*tokenizer.all_special_tokens, *END_TOKENS]))
    expected = (Message("user", user), Message("assistant", assistant), Message("user", final))
    for markup in BUILTIN.values():
        conversation = markup.parse(probe)
        shown = tuple(m for m in conversation.messages if m.role != "system") if conversation else None
        if shown == expected:  # a default system prompt the template adds on its own is fine
            return dataclasses.replace(markup, end_tokens=end_tokens)
    head, rest = probe.split(user, 1)
    user_to_assistant, rest = rest.split(assistant, 1)
    assistant_to_user, tail = rest.split(final, 1)
    system_head = system_to_user = None
    with_system = _render(tokenizer, [{"role": "system", "content": system}, *turns])
    if with_system is not None and system in with_system and with_system.index(system) < with_system.index(user):
        system_head, rest = with_system.split(system, 1)
        system_to_user = rest.split(user, 1)[0]
        if system_head == head[: len(system_head)] and system_to_user in ("", "\n", "\n\n"):
            system_head = system_to_user = None  # the system prompt is merged into the user turn: not separable
    return BoundaryMarkup(
        name=f"tokenizer:{path}",
        head=head,
        user_to_assistant=user_to_assistant,
        assistant_to_user=assistant_to_user,
        tail=tail,
        system_head=system_head,
        system_to_user=system_to_user,
        end_tokens=end_tokens,
    )


def _render(tokenizer: object, turns: list[dict[str, str]]) -> str | None:
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
    except Exception:  # templates raise their own errors (e.g. "System role not supported")
        return None
    return text if isinstance(text, str) else None


MARKUP_CHOICES = ("auto", "none", *BUILTIN)


def get_markup(name: str, policy_tokenizer: Path | None = None) -> Markup:
    """The markup the server reads ``/get_reward`` prompts with.

    Raises:
        ValueError: for an unknown name, or a tokenizer that cannot be used.
    """
    if policy_tokenizer is not None:
        return markup_from_tokenizer(policy_tokenizer)
    if name == "auto":
        return AutoMarkup()
    if name == "none":
        return NoMarkup()
    if name in BUILTIN:
        return BUILTIN[name]
    raise ValueError(f"unknown chat markup {name!r}; known: {', '.join(MARKUP_CHOICES)}")


def to_conversation(markup: Markup, prompt: str, response: str) -> tuple[tuple[Message, ...], str]:
    """The plain turns of a templated prompt and the response's own text; unparsed prompts pass through."""
    conversation = markup.parse(prompt)
    if conversation is None:
        return (Message("user", prompt),), markup.clean_response(response)
    return conversation.messages, markup.clean_response(response, conversation.prefill)
