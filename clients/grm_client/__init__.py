"""grm-client: talk to grm-serve, the generative reward model server.

>>> from grm_client import GRMClient
>>> grm = GRMClient(base_url="http://127.0.0.1:8000")
>>> grm.score("Is the sky blue?", ["Yes, on a clear day.", "No."]).rewards("mean")  # doctest: +SKIP
"""

from grm_client._async_client import AsyncGRMClient
from grm_client._base import build_item
from grm_client._client import GRMClient
from grm_client._errors import (
    APIStatusError,
    DeadlineExceededError,
    EngineDeadError,
    GRMError,
    InternalServerError,
    InvalidRequestError,
    NotReadyError,
    OverloadedError,
    RequestTimeoutError,
    TooLargeError,
    TransportError,
    UnauthorizedError,
)
from grm_client._models import (
    Ranking,
    RerankResult,
    ResponseScore,
    RewardMode,
    RolloutReward,
    Sample,
    ScoreResult,
)

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "AsyncGRMClient",
    "DeadlineExceededError",
    "EngineDeadError",
    "GRMClient",
    "GRMError",
    "InternalServerError",
    "InvalidRequestError",
    "NotReadyError",
    "OverloadedError",
    "Ranking",
    "RequestTimeoutError",
    "RerankResult",
    "ResponseScore",
    "RewardMode",
    "RolloutReward",
    "Sample",
    "ScoreResult",
    "TooLargeError",
    "TransportError",
    "UnauthorizedError",
    "build_item",
]
