import pytest

from server.engines.model_files import ModelNotFoundError, resolve_model


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        resolve_model(str(tmp_path / "nope"), tmp_path)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        resolve_model(str(tmp_path), tmp_path)


def test_local_folder_is_used_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path), tmp_path) == (str(tmp_path.resolve()), str(tmp_path))


def test_uncached_hub_name_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        resolve_model("BBQGOD/DeepSeek-GRM-27B", tmp_path)


def test_bf16_support_is_read_from_the_cpu_flags():
    from server.engines.vllm import cpu_has_native_bf16

    assert not cpu_has_native_bf16("processor : 0\nflags : fpu sse avx2 fma\n")
    assert cpu_has_native_bf16("flags : fpu avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags : amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("")
