"""Serve a model with a LoRA adapter (``--adapter DIR``): merged onto the base once, then a plain folder.

A peft adapter folder (what ``grm-train rft`` writes, or any peft LoRA) is merged into the base model's
weights with ``merge_and_unload`` in float32 and saved, in float32, as a Hugging Face folder in the model
cache (its config declaring the base's dtype), keyed by the
base's and the adapter's content hashes; later starts find it there. The engine then loads that folder
like any model, so the same path works on vLLM CPU and GPU alike (vLLM's own LoRA serving would need
``enable_lora`` and per-request adapter routing, which its CPU build does not offer on every version).

torch, transformers and peft are imported only when a merge is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_DONE_MARKER = ".grm-serve-merged.json"
_HASHES = "base-hashes.json"  # base folder -> content hash, so a large base is hashed once per version
MERGE_FORMAT = "float32-v2"  # in the cache key: a merged folder of an older format is never reused


class AdapterError(ValueError):
    """``--adapter`` is not a peft adapter, or it does not fit the base model; the message says which."""


@dataclass(frozen=True)
class AdapterInfo:
    """What ``/v1/info`` reports of a served adapter (no paths: the folder's name only)."""

    name: str
    sha256: str
    peft_type: str
    rank: int | None


def read_adapter(adapter: Path) -> AdapterInfo:
    """Check that ``adapter`` is a peft adapter folder and hash its content.

    Raises:
        AdapterError: if it is not a folder with ``adapter_config.json`` (a peft config) and adapter weights.
    """
    if not adapter.is_dir():
        raise AdapterError(f"--adapter {adapter.name or adapter}: not a folder")
    config_path = adapter / ADAPTER_CONFIG
    weights = [adapter / w for w in ADAPTER_WEIGHTS if (adapter / w).is_file()]
    if not config_path.is_file() or not weights:
        raise AdapterError(
            f"--adapter {adapter.name}: not a peft adapter folder (needs {ADAPTER_CONFIG} and "
            f"{' or '.join(ADAPTER_WEIGHTS)})"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"--adapter {adapter.name}: unreadable {ADAPTER_CONFIG} ({exc})") from None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise AdapterError(f"--adapter {adapter.name}: {ADAPTER_CONFIG} has no peft_type")
    digest = hashlib.sha256()
    for path in [config_path, *weights]:
        digest.update(path.name.encode() + b"\0")
        digest.update(_file_sha256(path).encode())
    rank = config.get("r") if isinstance(config.get("r"), int) else None
    return AdapterInfo(adapter.name, digest.hexdigest(), str(config["peft_type"]), rank)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def base_hash(base: Path, cache_dir: Path) -> str:
    """Content hash of the base model folder's files (remembered by name, size and mtime, so that a
    large base is read once per version, not at every start)."""
    files = sorted(p for p in base.iterdir() if p.is_file() and not p.name.startswith("."))
    stamp = json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    book = cache_dir / "merged" / _HASHES
    known: dict[str, Any] = {}
    with contextlib.suppress(OSError, json.JSONDecodeError):  # no book yet, or a torn one: hash again
        known = json.loads(book.read_text(encoding="utf-8"))
    entry = known.get(str(base.resolve()))
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + _file_sha256(p).encode())
    known[str(base.resolve())] = {"stamp": stamp, "sha256": digest.hexdigest()}
    book.parent.mkdir(parents=True, exist_ok=True)
    tmp = book.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
    tmp.replace(book)
    return digest.hexdigest()


def merged_model(base: Path, adapter: Path, cache_dir: Path) -> tuple[Path, AdapterInfo]:
    """The folder of ``base`` with ``adapter`` merged in, merging it first when the cache lacks it.

    Safe when several processes start at once: a file lock serialises the merge and the folder only
    appears, by rename, once complete.

    Raises:
        AdapterError: if ``adapter`` is not a peft adapter or does not fit ``base``.
    """
    info = read_adapter(adapter)
    key = hashlib.sha256(f"{MERGE_FORMAT}:{base_hash(base, cache_dir)}:{info.sha256}".encode()).hexdigest()[:16]
    out = cache_dir / "merged" / f"{base.name}+lora-{key}"
    if (out / _DONE_MARKER).exists():
        return out, info
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / _DONE_MARKER).exists():
            log.info(
                "merging adapter %s (%s) onto %s once, into the model cache", info.name, info.sha256[:12], base.name
            )
            _merge(base, adapter, out, {"adapter": info.name, "adapter_sha256": info.sha256, "base": base.name})
    return out, info


def _merge(base: Path, adapter: Path, out: Path, stamp: dict[str, str]) -> None:
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _declared_dtype(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    try:
        config = PeftConfig.from_pretrained(str(adapter))
        peft_model = PeftModel(model, config, "default")
        result = peft_model.load_adapter(str(adapter), "default")
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        # peft's "Target modules ... not found in the base model", torch's size mismatch, a foreign config.
        why = _first_line(exc)
        raise AdapterError(f"--adapter {adapter.name} does not fit the base model {base.name}: {why}") from None
    missing, unexpected = list(result.missing_keys), list(getattr(result, "unexpected_keys", []))
    if missing or unexpected:
        raise AdapterError(
            f"--adapter {adapter.name} does not fit the base model {base.name}: {len(missing)} adapted module(s) "
            f"of the base without adapter weights, {len(unexpected)} adapter weight(s) for no module of the base "
            f"(e.g. {(missing + unexpected)[0]})"
        )
    merged = peft_model.merge_and_unload()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left behind by a merge that crashed midway
    # The weights stay float32: a LoRA update is mostly below bf16's resolution (on the embedded model a bf16
    # save moved only 22% of the weights the update touched, and missed the exact merge by 79% of the update's
    # norm). The config still declares the base's dtype, so an engine that serves in it (vLLM's "auto" on a
    # GPU) casts as it would the base.
    merged.save_pretrained(tmp)
    if dtype is not None:
        _declare_dtype(tmp, dtype)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    (tmp / _DONE_MARKER).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def _declare_dtype(folder: Path, dtype: str) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = dtype
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _declared_dtype(base: Path) -> str | None:
    try:
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return value if value in ("float32", "float16", "bfloat16") else None


def _first_line(exc: BaseException) -> str:
    """The telling line of a load error (torch lists every size mismatch under a generic first line)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    telling = next((line for line in lines if "size mismatch" in line), lines[0] if lines else type(exc).__name__)
    return telling[:300]
