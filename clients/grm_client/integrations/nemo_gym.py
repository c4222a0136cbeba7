"""A NeMo Gym resources server's ``verify`` backed by grm-serve.

NeMo Gym's agents post every finished rollout to their resources server's ``/verify`` with
``{"responses_create_params": {"input": [...], "instructions": ...}, "response": {"output": [...]},
...the task's own fields}`` and read ``reward`` from the answer, which echoes the request. A resources
server that asks grm-serve for that reward is a few lines of NeMo Gym's own API::

    from pydantic import ConfigDict

    from nemo_gym.base_resources_server import BaseVerifyRequest, BaseVerifyResponse, SimpleResourcesServer
    from grm_client.integrations.nemo_gym import GRMVerifier

    grm = GRMVerifier("http://grm:8000", reference_field="expected_answer", k=4)

    class GRMVerifyRequest(BaseVerifyRequest):
        model_config = ConfigDict(extra="allow")  # keeps the task's own fields: expected_answer, metadata

    class GRMVerifyResponse(BaseVerifyResponse):
        model_config = ConfigDict(extra="allow")  # and echoes them, as NeMo Gym's own judges do

    class GRMResourcesServer(SimpleResourcesServer):
        async def verify(self, body: GRMVerifyRequest) -> GRMVerifyResponse:
            return GRMVerifyResponse(**body.model_dump(), reward=await grm.reward(body))

The body's type decides what reaches ``verify``: FastAPI parses the request into it, and
``BaseVerifyRequest`` itself (a plain pydantic model) drops every field it does not declare, the
task's ``expected_answer`` and ``metadata`` among them. NeMo Gym's own judges declare their request
models with ``extra="allow"`` the same way (``resources_servers/simpleqa``, ``equivalence_llm_judge``).

The GRM sees the rollout's conversation (``instructions`` as the system turn, then the input
messages up to the last user turn) and the text of the last assistant message of ``response.output``
(a refusal part counts as text; reasoning and tool calls are not judged). The task's
``reference_field`` (a top-level field, or the same key in ``metadata``) is the reference answer; a
task without that field is an error. Each verify is one ``/v1/score`` row; the server groups the
rollouts of one task that arrive together (``--group-window-s``).

NeMo Gym's client has no timeout of its own (aiohttp's default) and retries a dropped connection
every 0.5 s; grm-serve's deadline (``--request-timeout-s``) bounds the call. A grm-serve started with
``GRM_API_KEYS`` wants ``api_key=`` or ``$GRM_API_KEY`` in the resources server's environment.
"""

from __future__ import annotations

from typing import Any

from grm_client._async_client import AsyncGRMClient
from grm_client._models import RewardMode
from grm_client.integrations._common import (
    as_reference,
    check_options,
    default_api_key,
    default_base_url,
    loop_client,
    row_rewards,
)


def _dump(body: Any) -> dict[str, Any]:
    """A verify request as a dict: NeMo Gym hands pydantic models, tests and proxies plain JSON."""
    if hasattr(body, "model_dump"):
        dumped: dict[str, Any] = body.model_dump()
        return dumped
    if isinstance(body, dict):
        return body
    raise ValueError(f"a verify request is a dict or a pydantic model, got {type(body).__name__}")


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text (and refusal) parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", part.get("refusal")) for part in content if isinstance(part, dict)]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def conversation(body: Any) -> list[dict[str, str]]:
    """The turns the policy answered: ``instructions`` as the system turn, then the input messages
    (system and developer turns become system turns) up to and including the last user turn.

    Raises:
        ValueError: when the input holds no user turn.
    """
    params = _dump(body).get("responses_create_params") or {}
    turns: list[dict[str, str]] = []
    if isinstance(params.get("instructions"), str) and params["instructions"].strip():
        turns.append({"role": "system", "content": params["instructions"]})
    raw = params.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    for message in raw or []:
        if not isinstance(message, dict) or message.get("type", "message") != "message":
            continue  # tool calls and their outputs are not conversation turns
        role = {"developer": "system"}.get(message.get("role", ""), message.get("role", ""))
        if role in ("system", "user", "assistant"):
            turns.append({"role": role, "content": _text(message.get("content"))})
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("the verify request's responses_create_params.input holds no user turn")
    if not turns[last_user]["content"].strip():
        raise ValueError("the verify request's last user turn holds no text (the GRM judges text only)")
    return turns[: last_user + 1]


def final_answer(body: Any) -> str:
    """The text of the last assistant message in ``response.output`` ("" when there is none)."""
    output = (_dump(body).get("response") or {}).get("output") or []
    for item in reversed(output):
        if isinstance(item, dict) and item.get("type") == "message" and item.get("role") == "assistant":
            return _text(item.get("content")).strip()
    return ""


def _dropped_hint(body: Any) -> str:
    """Why a pydantic body may lack the task's fields: its model dropped them when NeMo Gym parsed it."""
    config = getattr(type(body), "model_config", None)
    if not isinstance(config, dict) or config.get("extra") == "allow":
        return ""
    return (
        f". verify's body type {type(body).__name__} drops the fields it does not declare: declare it "
        "as a BaseVerifyRequest subclass with model_config = ConfigDict(extra='allow') (docs/trainers.md)"
    )


def reference(body: Any, field: str | None) -> str | None:
    """The task's reference answer: ``body[field]``, else (missing, null or blank there)
    ``body["metadata"][field]``.

    Raises:
        ValueError: when neither place has the field: a task set that names its answer otherwise
            would be judged without it, silently.
    """
    if field is None:
        return None
    data = _dump(body)
    found = data.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    if field not in data and field not in metadata:
        raise ValueError(
            f"the verify request has no {field!r} field, at the top or in metadata; name the task's "
            f"reference answer field in reference_field, or pass reference_field=None{_dropped_hint(body)}"
        )
    return as_reference(data.get(field)) or as_reference(metadata.get(field))


class GRMVerifier:
    """Rewards for NeMo Gym verify requests.

    Args:
        base_url: grm-serve's address (default ``$GRM_URL`` or ``http://127.0.0.1:8000``).
        api_key: the key of a grm-serve started with ``GRM_API_KEYS`` (default ``$GRM_API_KEY``; none
            when unset).
        reference_field: the task field holding the reference answer (None: judge without one).
        reward: ``raw``, ``mean`` or ``unit`` (see :data:`grm_client.RewardMode`).
        missing: the reward of a rollout none of whose samples parsed, or whose output holds no
            assistant message.
        client: a configured :class:`AsyncGRMClient` (then without ``api_key``); by default one per event
            loop, address and key.
        **options: per-request GRM options (``k``, ``k_meta``, ``temperature``, ``max_tokens``, ``seed``,
            ``principles``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        reference_field: str | None = "expected_answer",
        reward: RewardMode = "unit",
        missing: float = 0.0,
        client: AsyncGRMClient | None = None,
        **options: Any,
    ) -> None:
        if client is not None and api_key is not None:
            raise ValueError("pass the API key to the client you give (AsyncGRMClient(api_key=...)), not beside it")
        self.base_url = base_url or default_base_url()
        self.api_key = api_key or default_api_key()
        self.reference_field = reference_field
        self.reward_mode: RewardMode = reward
        self.missing = missing
        self.client = client
        self.options = check_options(options)

    async def reward(self, body: Any) -> float:
        """The rollout's reward."""
        answer = final_answer(body)
        if not answer:
            return self.missing  # nothing to judge: the rollout produced no answer
        (value,) = await row_rewards(
            self.client or loop_client(self.base_url, self.api_key),
            [conversation(body)],
            [answer],
            reward=self.reward_mode,
            missing=self.missing,
            options=self.options,
            references=[reference(body, self.reference_field)],
        )
        return value

    async def verify(self, body: Any) -> dict[str, Any]:
        """NeMo Gym's verify answer as a dict: the request echoed, with ``reward``."""
        return {**_dump(body), "reward": await self.reward(body)}
