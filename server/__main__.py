"""``python -m server``: same as the ``grm-serve`` command."""

import sys

from server.cli import main

if __name__ == "__main__":  # spawn-safe: vLLM's engine process re-imports the main module
    sys.exit(main())
