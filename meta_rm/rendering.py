"""The meta RM's input text, as in the paper (pure).

One user turn that shows the conversation and the responses in the order the sample saw them,
followed by the sample's own output as the assistant turn. Response texts get the same
delimiter neutralisation as the GRM prompt, so a response cannot fake a block boundary.
"""

from __future__ import annotations

from meta_rm.base import Trajectory
from meta_rm.text import render_blocks, render_context, render_reference

META_RM_INSTRUCTION = "Please score the responses."


def render_user_turn(trajectory: Trajectory) -> str:
    """The user turn: instruction, conversation context and the shown responses."""
    blocks = render_blocks(trajectory.responses)
    context = render_context(trajectory.messages)
    if trajectory.reference is not None:  # the same section as in the GRM prompt; absent, the input is unchanged
        context += render_reference(trajectory.reference)
    return (
        f"{META_RM_INSTRUCTION}\n#### Conversation Context ####\n{context}\n#### Responses to be Scored ####\n{blocks}"
    )


def render_chat(trajectory: Trajectory) -> list[dict[str, str]]:
    """The two chat turns a sequence-classifier meta RM reads."""
    return [
        {"role": "user", "content": render_user_turn(trajectory)},
        {"role": "assistant", "content": trajectory.output.strip()},
    ]
