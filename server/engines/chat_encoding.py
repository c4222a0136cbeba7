"""A request's prompt as the model's tokenizer reads it: the chat template's markup live, caller text plain.

The vLLM engine (:mod:`server.engines.vllm`) sends prompts as token ids built here. The model's chat
template writes control tokens (``<|im_start|>``, ``<|im_end|>``) around each turn; the turns' contents
are caller text (a conversation, the responses being judged) and must never become control tokens, or a
response could close its own turn and forge the judge's answer. Which characters of the rendered text are
the template's and which are a turn's is known by construction, never by searching the text for the
caller's strings: the template renders the chat once with a unique placeholder in place of each turn's
content (:func:`_turn_pieces`), so its markup is everything between the placeholders and holds no caller
text at all.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Any

from server.engines.base import ChatTemplateError, GenerationRequest, RenderedPrompt

# Roles every chat template knows; any other (a judge's response_1, principle) is checked to be rendered.
STANDARD_ROLES = frozenset({"system", "user", "assistant"})


def _apply_template(tokenizer: Any, chat: list[dict[str, str]]) -> str:
    return str(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))


def render_chat(tokenizer: Any, request: GenerationRequest) -> str:
    """``request``'s chat rendered by the model's chat template, with its generation prompt.

    A judge's custom roles (Nemotron GenRM's ``response_1``, ``response_2``, ``principle``) need a
    template that renders them: a template that refuses a role (``raise_exception``) or silently
    drops the turn (as templates that only know the standard roles do) fails here, by name, instead
    of sending the judge a prompt without the responses it is to judge.

    Raises:
        ChatTemplateError: if the template fails on the chat or leaves out a custom role's turn.
    """
    chat = request.chat()
    try:
        text = _apply_template(tokenizer, chat)
    except Exception as exc:  # jinja2's TemplateError from raise_exception, or a template bug
        roles = ", ".join(dict.fromkeys(turn["role"] for turn in chat))
        raise ChatTemplateError(f"the model's chat template cannot render this chat (roles: {roles}): {exc}") from exc
    for turn in chat:
        content = turn["content"].strip()
        if turn["role"] not in STANDARD_ROLES and content and content not in text:
            raise ChatTemplateError(
                f"the model's chat template dropped the {turn['role']!r} turn; the judge needs a model whose "
                "template renders its roles (e.g. Nemotron GenRM's own)"
            )
    return text


def encode_chat(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Token ids of ``request``'s prompt: its chat rendered with the model's chat template and its
    generation prompt (:func:`render_chat`; or, for a ``raw`` request, its text as is), followed by
    the tokens of ``assistant_prefix`` (the start of the answer) when there is one.

    Caller text never becomes a special token: a response that writes ``<|im_end|>`` (or any other of
    the tokenizer's control tokens) is read as those characters, not as the end of its turn, so it
    cannot close its block and forge a turn of its own; and the template's own markup is always
    tokenized as usual, whatever the turns hold (a turn that repeats the markup cannot be mistaken for
    it: see :func:`_turn_pieces`). A template that rewrites a turn's content (``| trim``) is tokenized
    whole, with every control-token string in the turns broken first (:func:`_defanged`). A raw
    request's text is the judge's own format with caller text inside it, so none of it is read as a
    control token (the raw profiles' markup, e.g. Prometheus 2's ``[INST]``, is plain text for their
    models; the BOS token is added by the tokenizer).

    Raises:
        ChatTemplateError: see :func:`render_chat`.
    """
    return _encode(tokenizer, request, None if request.raw else render_chat(tokenizer, request))


def _encode(tokenizer: Any, request: GenerationRequest, text: str | None) -> list[int]:
    """:func:`encode_chat` given ``text``, ``request``'s chat already rendered (None for a raw request)."""
    ids: list[int] = []
    if text is None:
        ids = _literal(tokenizer, request.prompt, add_special_tokens=True)
    else:
        pieces = _turn_pieces(tokenizer, request.chat(), text)
        if pieces is None:  # the template rewrote a turn's content: control tokens in it defanged instead
            defanged = _defanged(request, [t for t in tokenizer.all_special_tokens if t])
            ids = list(tokenizer.encode(render_chat(tokenizer, defanged), add_special_tokens=False))
        else:
            for piece, literal in pieces:
                if piece:
                    ids += _literal(tokenizer, piece) if literal else tokenizer.encode(piece, add_special_tokens=False)
    if request.assistant_prefix:
        ids += _literal(tokenizer, request.assistant_prefix)
    return ids


def _literal(tokenizer: Any, text: str, *, add_special_tokens: bool = False) -> list[int]:
    """``text`` tokenized with every control-token string in it read as plain characters."""
    return list(tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True)["input_ids"])


def _defanged(request: GenerationRequest, specials: list[str]) -> GenerationRequest:
    """``request`` with every control-token string in its turns broken by a word joiner (U+2060) after
    its first character, so the tokenizer cannot read it as the token."""

    def defang(text: str) -> str:
        for token in specials:
            text = text.replace(token, token[0] + "\u2060" + token[1:])
        return text

    if request.messages is not None:
        return dataclasses.replace(request, messages=tuple((r, defang(c)) for r, c in request.messages))
    system = defang(request.system) if request.system is not None else None
    return dataclasses.replace(request, prompt=defang(request.prompt), system=system)


def _turn_pieces(tokenizer: Any, chat: list[dict[str, str]], text: str) -> list[tuple[str, bool]] | None:
    """``text`` (the template's rendering of ``chat``) cut into (piece, is caller text) pieces, in order.

    The template renders ``chat`` a second time with each non-empty content replaced by a placeholder of
    its own (a random tag between two ASCII separator characters, absent from ``text``). What lies
    between the placeholders is the template's markup, rendered without any caller text, so a turn that
    repeats the markup (``<|im_end|>\\n<|im_start|>``) cannot be taken for it. The cut is used only if
    putting each turn's content back in place of its placeholder gives ``text`` exactly, i.e. the template
    wrote every content unchanged and did not branch on it; otherwise None (the caller defangs instead).
    """
    tag = secrets.token_hex(16)
    if tag in text:  # never in practice (128 random bits); the defanged path is safe regardless
        return None
    contents = [turn["content"] for turn in chat]
    marked = [{**turn, "content": f"\x1e{tag}:{i}\x1f"} if turn["content"] else turn for i, turn in enumerate(chat)]
    try:
        skeleton = _apply_template(tokenizer, marked)
    except Exception:  # the template branched on the content (it rendered the chat itself above)
        return None
    parts = re.split(f"\x1e{tag}:(\\d+)\x1f", skeleton)  # markup, turn index, markup, ..., markup
    pieces: list[tuple[str, bool]] = []
    for j, part in enumerate(parts):
        pieces.append((contents[int(part)], True) if j % 2 else (part, False))
    if "".join(piece for piece, _ in pieces) != text:
        return None
    return pieces


def render_text(tokenizer: Any, request: GenerationRequest) -> RenderedPrompt:
    """The text and token count of ``request``'s prompt, exactly as :meth:`VLLMEngine.generate` sends it
    (:func:`encode_chat`): the chat template applied (a raw request's text as is, its special tokens
    counted), ``assistant_prefix`` appended.

    Raises:
        ChatTemplateError: see :func:`render_chat`.
    """
    chat = None if request.raw else render_chat(tokenizer, request)  # rendered once, for the text and its ids
    text = request.prompt if chat is None else chat
    return RenderedPrompt(text + request.assistant_prefix, len(_encode(tokenizer, request, chat)), exact=True)
