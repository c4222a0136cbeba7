"""Turn ``--meta-rm`` into a backend, offline.

* ``embedded``: the linear meta RM trained by ``grm-meta-rm train`` for the bundled GRM, shipped in
  this package (``meta_rm/default/``);
* a folder holding ``meta_rm.json``: another linear artifact;
* a folder holding a Hugging Face ``config.json``, or a hub name already in the local Hugging Face
  cache (``BBQGOD/DeepSeek-GRM-27B-MetaRM``): a sequence classifier through transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from meta_rm.base import MetaRM, MetaRMError
from meta_rm.linear import ARTIFACT_FILE, LinearMetaRM

EMBEDDED = "embedded"
DEFAULT_ARTIFACT = Path(__file__).parent / "default"


Resolver = Callable[[str], tuple[str, str]]
"""Maps a hub name or folder to ``(local folder, display name)``; raises ``LookupError`` when not found."""


def load_meta_rm(spec: str, *, device: str | None = None, resolve: Resolver | None = None) -> MetaRM:
    """The (not yet started) meta RM that ``spec`` names.

    Args:
        spec: ``embedded``, a folder, or a hub name.
        device: where a transformers meta RM runs.
        resolve: how to find a hub name in the local cache (the server passes its model resolver);
            without one, ``spec`` must be a folder.

    Raises:
        MetaRMError: if nothing usable is found; the message says what was tried.
    """
    if spec == EMBEDDED:
        if not (DEFAULT_ARTIFACT / ARTIFACT_FILE).exists():
            raise MetaRMError("the embedded meta RM artifact is missing; rebuild it with grm-meta-rm train")
        return LinearMetaRM(DEFAULT_ARTIFACT, "embedded-linear")
    path = Path(spec).expanduser()
    if (path / ARTIFACT_FILE).exists():
        return LinearMetaRM(path, path.name)
    if resolve is None or path.is_dir():
        if not path.is_dir():
            raise MetaRMError(f"meta RM {spec!r} is not a folder (hub names are looked up by the server)")
        if not (path / "config.json").exists():
            raise MetaRMError(
                f"meta RM {spec!r}: the folder has no {ARTIFACT_FILE} (linear) or config.json (transformers)"
            )
        local, name = str(path.resolve()), path.name
    else:
        try:
            local, name = resolve(spec)
        except LookupError as exc:
            raise MetaRMError(f"meta RM {spec!r}: {exc}") from None
    from meta_rm.hf import HFMetaRM

    return HFMetaRM(local, name, device=device)
