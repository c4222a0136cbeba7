"""A grm-serve process on a FakeEngine whose every generation takes DELAY seconds (shutdown tests).

python tests/api/_slow_fake_server.py DELAY PORT
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from server.app import build_app
from server.cli import serve
from server.config import Settings
from server.engines.fake import FakeEngine

if __name__ == "__main__":
    delay, port = float(sys.argv[1]), int(sys.argv[2])
    logging.basicConfig(level="INFO")
    settings = Settings(engine="fake", port=port, drain_timeout_s=30)
    sys.exit(serve(settings, lambda on_fatal: build_app(settings, engine=FakeEngine(delay=delay), on_fatal=on_fatal)))
