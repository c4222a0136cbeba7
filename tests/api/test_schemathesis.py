"""Schemathesis against the live OpenAPI schema of a real server process (fake engine), fixed seed.

API keys are on, as in a shared deployment: the schema declares the bearer scheme, Schemathesis
sends the key (and its auth checks send none or a wrong one, which must get the documented 401).

Every check runs except ``positive_data_acceptance``: the server rightly answers some schema-valid
bodies with a documented 400 (configurable limits such as ``max_k``, ``prompts`` and ``query`` of
different lengths), which JSON Schema cannot express. A 5xx, a response that does not match the
schema, an undocumented status or content type fails the test.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.launcher import launch

SERVER = Path(__file__).with_name("_slow_fake_server.py")
SEED = 42
MAX_EXAMPLES = 100
API_KEY = "schemathesis-key"


def test_fuzzed_requests_get_documented_answers_that_match_the_schema(tmp_path):
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    env = {"GRM_API_KEYS": f"{API_KEY},second-tenant-key"}
    with launch(
        command=[sys.executable, str(SERVER), "0"], log=tmp_path / "server.log", start_timeout_s=30, env=env
    ) as srv:
        run = subprocess.run(
            [
                cli,
                "run",
                f"{srv.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {API_KEY}",
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
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1]
