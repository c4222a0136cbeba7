"""The offline tools (grm-meta-rm, grm-eval) need the ``eval`` extra; the server does not."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence


def eval_extra_missing(tool: str, modules: Sequence[str]) -> bool:
    """Print how to install what ``tool`` lacks and return True, or return False when all is there."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{tool}: install the eval extra (pip install 'grm-serve[eval]'); missing: {', '.join(missing)}",
              file=sys.stderr)  # fmt: skip
    return bool(missing)
