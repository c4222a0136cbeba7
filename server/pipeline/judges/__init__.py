"""Judge profiles: the generative judges grm-serve serves, each data behind one interface.

``--judge NAME`` picks one (:func:`get_judge`), ``--judge-file PATH`` describes one without code
(:mod:`server.pipeline.judges.custom`); :mod:`server.pipeline.judges.base` says what a profile
is and :mod:`server.pipeline.judges.pairing` how the pipeline turns any profile's verdicts into
per-response votes.
"""

from __future__ import annotations

from collections.abc import Callable

from server.pipeline.judges.base import (
    AGGREGATIONS,
    MODES,
    Aggregation,
    Guidance,
    Judge,
    JudgePrompt,
    Mode,
    ParseError,
    Sampling,
    Scale,
    Slot,
    Verdict,
    integer_values,
    soft_votes_problem,
    unsupported,
)
from server.pipeline.judges.custom import CustomJudge
from server.pipeline.judges.custom_file import JudgeFileError, read_judge_file
from server.pipeline.judges.deepseek import DeepSeekGRM
from server.pipeline.judges.nemotron import NemotronGenRM, NemotronGenRM49B
from server.pipeline.judges.pairing import (
    PAIRINGS,
    Pairing,
    judged_sets,
    pools,
    states_preference,
    unsupported_aggregation,
    vote_scale,
    votes_of,
)
from server.pipeline.judges.prometheus import PrometheusAbsolute, PrometheusRelative
from server.pipeline.judges.rmr1 import RMR1Distilled, RMR1Instruct
from server.pipeline.judges.skywork import SkyworkCritic

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_JUDGE",
    "JUDGES",
    "MODES",
    "PAIRINGS",
    "Aggregation",
    "CustomJudge",
    "DeepSeekGRM",
    "Guidance",
    "Judge",
    "JudgeFileError",
    "JudgePrompt",
    "Mode",
    "NemotronGenRM",
    "NemotronGenRM49B",
    "Pairing",
    "ParseError",
    "Sampling",
    "Scale",
    "Slot",
    "Verdict",
    "get_judge",
    "integer_values",
    "judged_sets",
    "pools",
    "read_judge_file",
    "soft_votes_problem",
    "states_preference",
    "unsupported",
    "unsupported_aggregation",
    "vote_scale",
    "votes_of",
]

DEFAULT_JUDGE = "deepseek-grm"

# name -> a function building the profile (profiles are cheap, frozen dataclasses).
JUDGES: dict[str, Callable[[], Judge]] = {
    DEFAULT_JUDGE: DeepSeekGRM,
    "nemotron-genrm": NemotronGenRM,
    "nemotron-genrm-49b": NemotronGenRM49B,
    "rm-r1-instruct": RMR1Instruct,
    "rm-r1-distilled": RMR1Distilled,
    "skywork-critic": SkyworkCritic,
    "prometheus-2-absolute": PrometheusAbsolute,
    "prometheus-2-relative": PrometheusRelative,
}


def get_judge(name: str) -> Judge:
    """The judge profile called ``name``.

    Raises:
        KeyError: if no profile has that name; the message lists the known ones.
    """
    try:
        return JUDGES[name]()
    except KeyError:
        raise KeyError(f"unknown judge {name!r}; known judges: {', '.join(sorted(JUDGES))}") from None
