"""The conversation and response-block text that the GRM prompt and the meta RM input share (pure).

Both DeepSeek-GRM inputs (the GRM prompt and the meta RM's, arXiv 2504.02495 Appendix G) show the
conversation under ``#### Conversation Context ####`` and each response between ``[The Begin of
Response i]`` and ``[The End of Response i]``. Caller text is defanged the same way in both, so a
response can neither close its own block nor open a fake one. This module sits at the bottom of the
import graph: ``server.pipeline.prompts`` (the GRM prompt) and ``meta_rm.rendering`` (the meta RM
input) both build on it, and it imports nothing of this project.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Turn(Protocol):
    """One conversation turn; ``server.pipeline.domain.Message`` is one."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


# Structural markers of the templates. Caller text (conversation or responses) that contains one of
# them is defanged so it can neither close its own block nor open a fake one. The replacement keeps
# the text readable for the judge: only the opening character changes.
_MARKERS = (
    ("[The Begin of Response", "(The Begin of Response"),
    ("[The End of Response", "(The End of Response"),
    ("####", "# # #"),
)


def neutralize(text: str) -> str:
    """Defang the templates' own delimiters inside caller-supplied text.

    Args:
        text: a response or conversation turn written by someone other than the template.

    Returns:
        The text with every block delimiter and section header altered so that it cannot be read
        as template structure; everything else is unchanged.
    """
    for marker, replacement in _MARKERS:
        text = text.replace(marker, replacement)
    return text


def render_context(messages: Sequence[Turn]) -> str:
    """Render the conversation; the last user turn is the query.

    A single user turn is rendered as its bare text, a longer conversation as a
    ``User: ...\\n\\nAssistant: ...`` transcript, the same shape as the preference data sets use.
    """
    if len(messages) == 1:
        return neutralize(messages[0].content)
    turns = (f"{m.role.capitalize()}: {neutralize(m.content)}" for m in messages)
    return "\n\n".join(turns)


def render_blocks(responses: Sequence[str]) -> str:
    """The responses as numbered ``[The Begin of Response i]`` ... ``[The End of Response i]`` blocks."""
    return "\n".join(
        f"[The Begin of Response {i}]\n{neutralize(text)}\n[The End of Response {i}]"
        for i, text in enumerate(responses, start=1)
    )


def render_reference(reference: str) -> str:
    """A reference answer as its own ``#### Reference Answer ####`` section (defanged), to follow the context."""
    return "\n\n#### Reference Answer ####\n" + neutralize(reference.strip())
