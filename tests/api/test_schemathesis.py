"""Schemathesis against the live OpenAPI schema of a real server process (fake engine), fixed seed.

Every check runs except ``positive_data_acceptance``: the server rightly answers some schema-valid
bodies with a documented 400 (configurable limits such as ``max_k``, ``prompts`` and ``query`` of
different lengths), which JSON Schema cannot express. A 5xx, a response that does not match the
schema, an undocumented status or content type fails the test.
"""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SERVER = Path(__file__).with_name("_slow_fake_server.py")
SEED = 42
MAX_EXAMPLES = 100


def test_fuzzed_requests_get_documented_answers_that_match_the_schema(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.1)
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        run = subprocess.run(
            [
                cli,
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1]
