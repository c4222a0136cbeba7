"""Bad input to grm-train rft (and the shared preference reader) is a clear one-line error, never a
silently dropped item or a label read as some other index."""

from __future__ import annotations

import json

import pytest

from grm_train.cli import main
from grm_train.rft import StageError, run
from meta_rm.training.data import DataError, PreferenceItem, read_preferences
from server.engines.fake import FakeEngine
from server.pipeline.domain import Message
from tests.unit.test_rft_stages import spec, weak_judge


def write(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("label", [float("nan"), None, "x", 1.5, True])
def test_a_preferred_label_that_is_not_an_index_is_a_data_error(tmp_path, label):
    f = write(tmp_path / "a.jsonl", {"id": "x", "prompt": "Q", "responses": ["a", "b"], "preferred": label})
    with pytest.raises(DataError, match=r"a\.jsonl:1: 'preferred' must be an integer index"):
        read_preferences(f)


@pytest.mark.parametrize("field", ["chosen", "rejected"])
def test_a_null_response_is_a_data_error_not_the_text_none(tmp_path, field):
    f = write(tmp_path / "a.jsonl", {"id": "x", "prompt": "Q", "chosen": "c", "rejected": "r"} | {field: None})
    with pytest.raises(DataError, match=f"'{field}' must hold strings"):
        read_preferences(f)


def test_an_id_in_two_data_files_stops_the_cli_with_one_line(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", {"id": "x", "prompt": "Q1", "chosen": "c1", "rejected": "r1"})
    b = write(tmp_path / "b.jsonl", {"id": "x", "prompt": "Q2", "chosen": "c2", "rejected": "r2"})
    assert main(["rft", "--data", str(a), str(b), "--out", str(tmp_path / "out"), "--stages", "select"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "grm-train: b.jsonl: id 'x' is also in a.jsonl; ids must be unique across --data"


def test_an_item_with_more_responses_than_one_judgment_holds_is_refused(tmp_path):
    responses = tuple(f"response {'x' * i}" for i in range(9))
    item = PreferenceItem("bon9", "t", "s", (Message("user", "Q?"),), responses, 8)
    with pytest.raises(StageError, match=r"item bon9 has 9 responses.*at most 8"):
        run(spec(tmp_path, [item]), {"sample", "select"}, make_engine=lambda: FakeEngine(script=weak_judge))
