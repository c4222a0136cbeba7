import json

import pytest

from meta_rm.training.data import DataError, read_preferences, select_per_source, split_by_prompt
from tests.conftest import shared_file, smoke_pairs


def write(tmp_path, lines):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def record(i, source="s", prompt=None):
    return json.dumps(
        {
            "id": f"{source}:{i}",
            "source": source,
            "prompt": prompt or f"question {i}",
            "chosen": "good",
            "rejected": "bad",
        }
    )


def test_reads_pairs_in_the_shared_schema():
    items = read_preferences(shared_file("data", "smoke.jsonl"))
    pairs = smoke_pairs()
    assert len(items) == len(pairs) == 12
    first = items[0]
    assert first.preferred == 0 and first.responses == (pairs[0]["chosen"], pairs[0]["rejected"])
    assert first.messages[-1].role == "user"


def test_best_of_n_records_and_prompt_only_records(tmp_path):
    path = write(tmp_path, [json.dumps({"prompt": "q", "responses": ["a", "b", "c"], "preferred": 2})])
    (item,) = read_preferences(path)
    assert item.responses == ("a", "b", "c") and item.preferred == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "d.jsonl:1: not JSON"),
        (json.dumps({"prompt": "q"}), "needs 'chosen' and 'rejected'"),
        (json.dumps({"chosen": "a", "rejected": "b"}), "needs 'messages' or 'prompt'"),
        (json.dumps({"prompt": "q", "responses": ["a", "b"], "preferred": 5}), "'preferred' must index"),
        (
            json.dumps({"messages": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"}),
            "end with the user's turn",
        ),
    ],
)
def test_bad_records_name_the_file_and_line(tmp_path, line, message):
    with pytest.raises(DataError, match=message):
        read_preferences(write(tmp_path, [line]))


def test_split_never_puts_one_prompt_on_both_sides(tmp_path):
    lines = [record(i, prompt=f"prompt {i % 40}") for i in range(200)]
    items = read_preferences(write(tmp_path, lines))
    train, heldout = split_by_prompt(items, 0.3)
    assert {i.prompt_key for i in train}.isdisjoint({i.prompt_key for i in heldout})
    assert 0.1 < len(heldout) / len(items) < 0.5


def test_selection_draws_per_source_and_interleaves_sources(tmp_path):
    lines = [record(i, "a") for i in range(10)] + [record(i, "b") for i in range(3)]
    items = read_preferences(write(tmp_path, lines))
    chosen = select_per_source(items, 4, seed=0)
    assert [i.source for i in chosen] == ["a", "b", "a", "b", "a", "b", "a"]
    assert select_per_source(items, 4, seed=0) == chosen
