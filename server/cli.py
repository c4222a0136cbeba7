"""``grm-serve``: start the reward server.

Flags are generated from :class:`~server.config.Settings` (``--max-group-size 4`` is
``GRM_MAX_GROUP_SIZE=4``), so the two never drift apart; flags take precedence over the environment.
Any other ``--flag value`` is handed to vLLM's ``AsyncEngineArgs`` unchanged (``--max-num-seqs 64``,
``--enable-prefix-caching``), so a vLLM user's engine flags keep working.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from server import __version__
from server.config import Settings
from server.serving.policy_markup import get_markup

log = logging.getLogger("grm_serve")

# Settings with no flag: secrets stay out of the process list, and engine arguments come as unknown flags.
ENV_ONLY = frozenset({"api_keys", "extra_engine_args"})


def _show(value: Any) -> str:
    return "unset" if value is None else str(value)


def _add_setting(parser: argparse.ArgumentParser, name: str, field: FieldInfo) -> None:
    """One ``--flag`` for a settings field: type, choices and help (default and env name) from the field."""
    flag = "--" + name.replace("_", "-")
    default = field.get_default(call_default_factory=True)
    help_ = f"{field.description} (default: {_show(default)}; env GRM_{name.upper()})"
    kind: Any = field.annotation
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # ``int | None``: the flag takes an int
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
    elif typing.get_origin(kind) is typing.Literal:
        parser.add_argument(flag, dest=name, choices=typing.get_args(kind), default=None, help=help_)
    else:
        parser.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(), help=help_)


def build_parser() -> argparse.ArgumentParser:
    """The ``grm-serve`` parser: one flag per :class:`Settings` field, generated from its type and description."""
    parser = argparse.ArgumentParser(
        prog="grm-serve",
        description=(
            "Serve a generative reward model (DeepSeek-GRM style) over HTTP: k sampled principles + "
            "critiques + scores per request, voted into one reward per response. Every flag can also "
            "be set as GRM_<NAME> in the environment (flags win). Unknown --flags go to vLLM's engine "
            "arguments (--max-num-seqs 64, --enable-prefix-caching). API keys come from GRM_API_KEYS "
            "or --api-key-file only."
        ),
    )
    for name, field in Settings.model_fields.items():
        if name not in ENV_ONLY:
            _add_setting(parser, name, field)
    parser.add_argument("--version", action="version", version=f"grm-serve {__version__}")
    return parser


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def engine_passthrough(extra: Sequence[str]) -> dict[str, Any]:
    """Turn ``--some-flag value`` / ``--flag=value`` / bare ``--flag`` into engine keyword arguments.

    Raises:
        ValueError: for a stray positional argument.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise ValueError(f"unexpected argument {token!r}")
        name, eq, value = token[2:].partition("=")
        key = name.replace("-", "_")
        if eq:
            out[key] = _coerce(value)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out[key] = _coerce(extra[i + 1])
            i += 2
        else:
            out[key] = True
            i += 1
    return out


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the environment, overridden by the command line; exits 2 with a clear message."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        passthrough = engine_passthrough(extra)
        if passthrough:
            overrides["extra_engine_args"] = passthrough
        settings = Settings(**overrides)
        settings.resolved_api_keys()  # an unreadable key file fails here, with the flag named
        if settings.adapter is not None:
            from server.engines.adapters import read_adapter

            read_adapter(settings.adapter)  # not a peft adapter folder: a usage error, before any model loads
        get_markup(settings.chat_markup, settings.policy_tokenizer)  # so does an unusable policy tokenizer
        return settings
    except (ValidationError, ValueError) as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit code."""
    settings = parse_settings(argv)
    from server.app import build_app
    from server.ops.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    log.info("grm-serve %s on http://%s:%s (model=%s)", __version__, settings.host, settings.port, settings.model)
    if settings.adapter is not None and settings.engine == "vllm" and (problem := merge_adapter(settings)):
        print(f"grm-serve: {problem}", file=sys.stderr)
        return 2
    return serve(settings, lambda on_fatal: build_app(settings, on_fatal=on_fatal))


def merge_adapter(settings: Settings) -> str | None:
    """Merge ``--adapter`` onto the model before serving (cached; the engine then finds the merged folder),
    so that an adapter that does not fit the model stops the start with a message, not a traceback.
    Returns that message, or None when the merged model is ready."""
    from server.engines.adapters import AdapterError, merged_model
    from server.engines.model_files import ModelNotFoundError, resolve_model

    assert settings.adapter is not None
    try:
        path, _ = resolve_model(settings.model, settings.cache_dir)
        merged_model(Path(path), settings.adapter, settings.cache_dir)
    except (AdapterError, ModelNotFoundError) as exc:
        return str(exc)
    return None


def serve(settings: Settings, make_app: Callable[[Callable[[int], None]], Any]) -> int:
    """Run an app under uvicorn until SIGINT/SIGTERM or a fatal engine failure; returns the exit code.

    On SIGTERM the app drains: readiness turns 503 and new scoring calls get 503 ``not_ready`` while
    uvicorn stops accepting connections and lets accepted requests finish for up to
    ``drain_timeout_s``; then the engine shuts down and the process exits 0. A dead engine exits 1.
    """
    import uvicorn

    exit_code = 0
    server: uvicorn.Server | None = None

    def on_fatal(code: int) -> None:
        nonlocal exit_code
        exit_code = code
        if server is not None:
            server.should_exit = True

    app = make_app(on_fatal)

    class DrainingServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises a captured SIGTERM after shutting down, so a clean drain would end
            # with "killed by signal"; an orchestrator should see exit status 0 instead.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                log.info("signal %s: draining (up to %ss for accepted requests)", sig, settings.drain_timeout_s)
                app.state.grm.begin_drain()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep configure_logging's handlers
        access_log=False,  # AccessLogMiddleware writes access records, with the request id
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )
    server = DrainingServer(config)
    server.run()
    return exit_code


if __name__ == "__main__":  # spawn-safe: vLLM's engine process re-imports the main module
    sys.exit(main())
