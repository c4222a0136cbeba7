"""``--adapter``: /v1/info reports the served LoRA adapter, and ``--meta-rm auto`` uses no meta RM with one."""

from __future__ import annotations

import json

import pytest

from server.cli import parse_settings
from server.config import Settings
from server.engines.fake import FakeEngine
from tests.api.conftest import ITEM, running_app


@pytest.fixture
def adapter(tmp_path):
    folder = tmp_path / "my-adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


async def test_info_reports_the_adapter_by_name_and_content_hash(adapter):
    async with running_app(FakeEngine(), adapter=adapter) as client:
        info = (await client.get("/v1/info")).json()
        scored = await client.post("/v1/score", json=ITEM)
    assert info["adapter"]["name"] == "my-adapter" and info["adapter"]["rank"] == 8
    assert info["adapter"]["peft_type"] == "LORA" and len(info["adapter"]["sha256"]) == 64
    assert str(adapter.parent) not in json.dumps(info)  # a name, never a path
    assert scored.status_code == 200


async def test_info_reports_no_adapter_without_one():
    async with running_app(FakeEngine()) as client:
        assert (await client.get("/v1/info")).json()["adapter"] is None


def test_meta_rm_auto_means_none_with_an_adapter(adapter):
    assert Settings(engine="vllm", model="embedded").meta_rm_spec() == "embedded"
    assert Settings(engine="vllm", model="embedded", adapter=adapter).meta_rm_spec() is None
    assert Settings(engine="vllm", model="embedded", adapter=adapter, meta_rm="embedded").meta_rm_spec() == "embedded"


def test_a_folder_that_is_not_an_adapter_stops_the_start_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--adapter", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not a peft adapter folder" in err and "Traceback" not in err
