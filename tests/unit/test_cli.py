import pytest

from server.cli import engine_passthrough, parse_settings


def test_unknown_flags_go_to_the_engine_with_types():
    assert engine_passthrough(
        ["--max-num-seqs", "64", "--enable-prefix-caching", "--swap-space=4.5", "--kv-cache-dtype", "fp8"]
    ) == {
        "max_num_seqs": 64,
        "enable_prefix_caching": True,
        "swap_space": 4.5,
        "kv_cache_dtype": "fp8",
    }


def test_flags_override_the_environment(monkeypatch):
    monkeypatch.setenv("GRM_PORT", "9000")
    monkeypatch.setenv("GRM_K", "4")
    s = parse_settings(["--port", "9100", "--tensor-parallel-size", "2"])
    assert (s.port, s.k, s.engine_kwargs()["tensor_parallel_size"]) == (9100, 4, 2)


def test_defaults_are_the_papers_scaling_setting():
    s = parse_settings([])
    assert (s.host, s.port, s.k, s.temperature, s.max_tokens, s.format_guidance) == (
        "127.0.0.1",
        8000,
        8,
        0.5,
        1024,
        True,
    )


def test_invalid_settings_exit_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--k", "64", "--max-k", "32"])
    assert exc.value.code == 2
    assert "k=64 exceeds max_k=32" in capsys.readouterr().err


def test_stray_positional_argument_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["oops"])
    assert "unexpected argument 'oops'" in capsys.readouterr().err


def test_metrics_are_public_unless_the_flag_says_otherwise():
    assert parse_settings([]).metrics_public is True
    assert parse_settings(["--no-metrics-public"]).metrics_public is False


def test_every_setting_has_one_generated_flag_with_its_default_and_env_name_once():
    from server.cli import ENV_ONLY, build_parser
    from server.config import Settings

    parser = build_parser()
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    assert "(default: None)" not in text
    flags = {o for a in parser._actions for o in a.option_strings}
    for name in Settings.model_fields:
        if name in ENV_ONLY:
            assert f"--{name.replace('_', '-')}" not in flags
            continue
        assert f"--{name.replace('_', '-')}" in flags
        assert text.count(f"env GRM_{name.upper()})") == 1
    assert "port to listen on (default: 8000; env GRM_PORT)" in text
    assert text.count("default:") == len(Settings.model_fields) - len(ENV_ONLY)


def test_generated_flags_parse_types_choices_and_booleans(capsys):
    s = parse_settings(["--no-format-guidance", "--log-level", "debug", "--max-model-len", "4096", "--cache-dir", "/x"])
    assert (s.format_guidance, s.log_level, s.max_model_len, str(s.cache_dir)) == (False, "debug", 4096, "/x")
    with pytest.raises(SystemExit):
        parse_settings(["--log-level", "loud"])
    assert "invalid choice: 'loud'" in capsys.readouterr().err


def test_votes_are_hard_by_default_and_the_flag_takes_soft(capsys):
    assert parse_settings([]).votes == "hard"
    assert parse_settings(["--votes", "soft"]).votes == "soft"
    with pytest.raises(SystemExit):
        parse_settings(["--votes", "fuzzy"])
    assert "invalid choice: 'fuzzy'" in capsys.readouterr().err
