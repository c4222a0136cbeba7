"""What the server needs from a meta reward model, and the one input it rates.

A meta RM reads one GRM sample in context (the conversation, the responses in the order that sample
saw them, and the sample's own output) and returns a scalar: higher means "this sample's scores are
more likely right". Backends: :mod:`meta_rm.linear` (the embedded CPU default) and
:mod:`meta_rm.hf` (Hugging Face sequence classifiers such as ``BBQGOD/DeepSeek-GRM-27B-MetaRM``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from meta_rm.text import Turn


class MetaRMError(RuntimeError):
    """The meta RM cannot load or rate samples."""


@dataclass(frozen=True)
class Trajectory:
    """One parsed GRM sample, as the meta RM sees it.

    Attributes:
        messages: the conversation, ending with the user's query.
        responses: the responses in the order this sample was shown them.
        output: the sample's generated text (Specific Criteria, Analysis, Scores).
        scores: the sample's scores in shown order.
        reference: the reference answer the GRM judged with, if any.
    """

    messages: tuple[Turn, ...]
    responses: tuple[str, ...]
    output: str
    scores: tuple[float, ...]
    reference: str | None = None


@dataclass(frozen=True)
class MetaRMInfo:
    """What ``/v1/info`` reports about the meta RM."""

    name: str
    backend: str
    details: dict[str, str]


@runtime_checkable
class MetaRM(Protocol):
    """A scalar rater of GRM samples."""

    @property
    def info(self) -> MetaRMInfo: ...

    async def start(self) -> None:
        """Load weights; called once before the first ``score``.

        Raises:
            MetaRMError: if the model cannot be loaded.
        """

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]:
        """One meta reward per trajectory, in order (higher = more trustworthy).

        Raises:
            MetaRMError: if not started or the backend fails.
        """
        ...

    def healthy(self) -> bool:
        """Whether ``score`` can be called."""
        ...

    async def shutdown(self) -> None:
        """Release the model."""
