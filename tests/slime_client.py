"""slime's remote reward-model call, reproduced (slime is not on the package index, so it cannot be installed).

From ``slime/rollout/rm_hub/__init__.py`` at THUDM/slime 624b824: one shared aiohttp session with 64
connections and a 120 s total timeout (the wait for a connection included), the sample's
``{"prompt", "response", "label"}`` as JSON, any error retried with backoff ``min(2**attempt, 30)``
plus up to 1 s of jitter, 10 tries, the JSON answer kept as the sample's reward (``--reward-key``
picks a field of it). The e2e test and ``benchmarks/burst.py`` both call grm-serve through this.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp


def slime_session() -> aiohttp.ClientSession:
    """slime's ``_get_shared_session()``; open it inside the event loop that uses it."""
    connector = aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


async def remote_rm(session: aiohttp.ClientSession, rm_url: str, payload: dict[str, Any], max_retries: int = 10) -> Any:
    """slime's ``remote_rm`` for one sample's payload."""
    for attempt in range(max_retries):
        try:
            async with session.post(rm_url, json=payload) as resp:
                resp.raise_for_status()
                return await resp.json()
        except Exception:
            if attempt + 1 >= max_retries:
                raise
            await asyncio.sleep(min(2**attempt, 30) + random.random())
    raise AssertionError("unreachable: the last try returns or raises")
