"""grm-train rft resumes only from what the current run would have written: a torn cache line loses no
record, and a stage's output made from other samples (another config or item set) is refused, not reused."""

from __future__ import annotations

from grm_train.rft import run
from server.engines.fake import FakeEngine
from tests.unit.test_rft_stages import ITEMS, spec, stage_counts, weak_judge


def test_a_record_appended_after_a_torn_line_is_kept(tmp_path):
    (tmp_path / "samples.jsonl").write_text('{"id": "p9", "config": {"mod')  # a run killed mid-write
    run(spec(tmp_path, ITEMS), {"sample", "select"}, make_engine=lambda: FakeEngine(script=weak_judge))
    assert stage_counts(tmp_path)["select"]["items"] == len(ITEMS)
