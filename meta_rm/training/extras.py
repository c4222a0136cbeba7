"""The offline tools need an extra the server does not: grm-meta-rm and grm-eval ``eval``, grm-train ``train``."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence


def extra_missing(tool: str, extra: str, modules: Sequence[str]) -> bool:
    """Print how to install what ``tool`` lacks from ``extra`` and return True, or False when all is there."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{tool}: install the {extra} extra (pip install 'grm-serve[{extra}]'); missing: {', '.join(missing)}",
              file=sys.stderr)  # fmt: skip
    return bool(missing)


def eval_extra_missing(tool: str, modules: Sequence[str]) -> bool:
    """:func:`extra_missing` for the ``eval`` extra."""
    return extra_missing(tool, "eval", modules)
