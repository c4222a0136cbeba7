"""A scripted meta RM for tests and demos: same async semantics as the real ones, no model.

Its score is a pure function of the trajectory (``rule``); by default the sample's score margin
between its first-shown and last-shown response, which makes tests able to predict the kept set.
Like the real backends it refuses to score before ``start()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meta_rm.base import MetaRMError, MetaRMInfo, Trajectory


def _default_rule(t: Trajectory) -> float:
    return float(t.scores[0] - t.scores[-1])


class FakeMetaRM:
    """Args: rule: trajectory -> meta reward; fail_with: raise this from ``score`` (error tests)."""

    def __init__(
        self, rule: Callable[[Trajectory], float] = _default_rule, *, fail_with: Exception | None = None
    ) -> None:
        self.rule = rule
        self.fail_with = fail_with
        self.calls: list[int] = []  # batch sizes seen
        self._started = False

    @property
    def info(self) -> MetaRMInfo:
        return MetaRMInfo("fake", "fake", {})

    async def start(self) -> None:
        self._started = True

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]:
        if not self._started:
            raise MetaRMError("the meta RM has not been started")
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(len(trajectories))
        return [self.rule(t) for t in trajectories]

    def healthy(self) -> bool:
        return self._started

    async def shutdown(self) -> None:
        self._started = False
