"""Which markup the server reads trainers' prompts with (:func:`get_markup`): ``auto``, ``none``, a
built-in template's name, or a policy tokenizer's own chat template (``--policy-tokenizer``).

For a template none of the built-in ones knows, the tokenizer's template renders a probe conversation
of sentinel words, and the text it puts between them is the markup (:class:`BoundaryMarkup`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from server.pipeline.domain import Message
from server.serving.chat_markup import (
    BUILTIN,
    AutoMarkup,
    Conversation,
    Markup,
    NoMarkup,
    ends_with_user,
    strip_end_run,
)


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
    end_tokens: tuple[str, ...] = ()

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
        if not ends_with_user(turns):
            return None
        return Conversation(tuple(turns), end_tokens=self.end_tokens)

    def clean_response(self, text: str, prefill: str = "") -> str:
        return strip_end_run(prefill + text, self.end_tokens).strip()


_SENTINELS = ("GRMSERVESYSTEMX", "GRMSERVEUSERX", "GRMSERVEASSISTANTX", "GRMSERVEFINALUSERX")


@functools.cache  # the CLI checks it before the app is built, which uses it
def markup_from_tokenizer(path: Path) -> Markup:
    """The markup of a policy tokenizer's chat template (``--policy-tokenizer``), from a local folder.

    The template renders a probe conversation of sentinel words; the text between them is what the
    template puts between turns. If a built-in template reads the probe back exactly, that one is used
    (it tolerates whitespace variants), with the tokenizer's BOS as one of its BOS tokens and its special
    tokens added to the template's end tokens; otherwise the boundaries themselves are, with the
    tokenizer's special tokens as end tokens. Either way a BOS or unknown token (unless it is also the
    EOS or padding) is never taken for the end of a response.

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
    bos = getattr(tokenizer, "bos_token", None)
    never_last = {bos, getattr(tokenizer, "unk_token", None)} - {tokenizer.eos_token, tokenizer.pad_token}
    special = [t for t in tokenizer.all_special_tokens if t and t not in never_last]
    expected = (Message("user", user), Message("assistant", assistant), Message("user", final))
    for builtin in BUILTIN.values():
        markup = dataclasses.replace(
            builtin,
            end_tokens=tuple(dict.fromkeys([*builtin.end_tokens, *special])),
            bos_tokens=tuple(dict.fromkeys([*builtin.bos_tokens, *([bos] if bos else [])])),
        )
        conversation = markup.parse(probe)
        shown = tuple(m for m in conversation.messages if m.role != "system") if conversation else None
        if shown == expected:  # a default system prompt the template adds on its own is fine
            return markup
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
        end_tokens=tuple(dict.fromkeys(special)),
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
