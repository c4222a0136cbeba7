"""A Hugging Face sequence classifier as the meta RM (transformers; CPU or GPU).

This is the backend of released checkpoints such as ``BBQGOD/DeepSeek-GRM-27B-MetaRM`` (a Gemma-2
classifier whose single logit is the meta reward). Each trajectory is rendered as the paper's two
chat turns (:mod:`meta_rm.rendering`) with the checkpoint's own chat template and the logit of
label 0 is the score.

Why transformers and not vLLM's pooling runner: the meta RM does one forward pass per sample and no
decoding, so vLLM's scheduler and paged KV cache buy little, while a second vLLM engine in the same
process would have to split GPU memory with the GRM's engine by hand. With transformers the
classifier sits on any device (``--meta-rm-device cuda:1`` puts it on its own GPU).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from meta_rm.base import MetaRMError, MetaRMInfo, Trajectory
from meta_rm.rendering import render_chat

log = logging.getLogger(__name__)


class HFMetaRM:
    """Sequence-classification meta RM.

    Args:
        path: a local checkpoint folder.
        name: what ``/v1/info`` calls it.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: cuda when available).
        max_length: inputs longer than this keep their end (the sample's critique) and lose their start.
        batch_size: trajectories per forward pass.
    """

    def __init__(
        self, path: str, name: str, *, device: str | None = None, max_length: int = 8192, batch_size: int = 8
    ) -> None:
        self.path = path
        self.name = name
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = asyncio.Lock()

    @property
    def info(self) -> MetaRMInfo:
        return MetaRMInfo(self.name, "transformers", {"device": str(self.device)})

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MetaRMError(f"cannot load the meta RM {self.name!r} as a sequence classifier: {exc}") from exc
        if model.config.num_labels != 1:
            log.warning("meta RM %s has %d labels; using the logit of label 0", self.name, model.config.num_labels)
        tokenizer.truncation_side = "left"  # keep the critique, which sits at the end
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self._model = model.to(device).eval()
        self._tokenizer = tokenizer
        self.device = device

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        log.info("meta RM %s loaded on %s", self.name, self.device)

    def _texts(self, trajectories: Sequence[Trajectory]) -> list[str]:
        return [self._tokenizer.apply_chat_template(render_chat(t), tokenize=False) for t in trajectories]

    def _forward(self, trajectories: Sequence[Trajectory]) -> list[float]:
        import torch

        out: list[float] = []
        texts = self._texts(trajectories)
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,  # the chat template already wrote them
            ).to(self._model.device)
            with torch.inference_mode():
                logits = self._model(**batch).logits
            out.extend(float(x) for x in logits[:, 0].float().cpu())
        return out

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]:
        if self._model is None:
            raise MetaRMError("the meta RM has not been started")
        if not trajectories:
            return []
        async with self._lock:  # one forward at a time; the model is not re-entrant across threads
            try:
                return await asyncio.to_thread(self._forward, trajectories)
            except RuntimeError as exc:
                raise MetaRMError(f"meta RM forward pass failed: {exc}") from exc

    def healthy(self) -> bool:
        return self._model is not None

    async def shutdown(self) -> None:
        self._model = None
        self._tokenizer = None
