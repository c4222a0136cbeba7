"""``grm-serve``: start the reward server.

Flags mirror the settings (``--max-group-size 4`` is ``GRM_MAX_GROUP_SIZE=4``); flags take precedence
over the environment. Any other ``--flag value`` is handed to vLLM's ``AsyncEngineArgs`` unchanged
(``--max-num-seqs 64``, ``--enable-prefix-caching``), so a vLLM user's engine flags keep working.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from server import __version__
from server.config import Settings

log = logging.getLogger("grm_serve")

# (flag, settings field, type, help)
_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--host", "host", str, "interface to listen on (default 127.0.0.1)"),
    ("--port", "port", int, "port to listen on (default 8000)"),
    ("--log-level", "log_level", str, "debug, info, warning or error"),
    ("--log-format", "log_format", str, "json (one object per line, default) or text"),
    ("--engine", "engine", str, "vllm (default) or fake (scripted, for demos and tests; no model)"),
    ("--model", "model", str, "'embedded' (bundled SmolLM2-135M-Instruct), a local HF folder or a cached hub name"),
    ("--cache-dir", "cache_dir", str, "where the embedded model is converted once (default ~/.cache/grm-serve)"),
    ("--max-model-len", "max_model_len", int, "vLLM: context length"),
    ("--dtype", "dtype", str, "vLLM: weight dtype (auto, bfloat16, float16, float32)"),
    ("--tensor-parallel-size", "tensor_parallel_size", int, "vLLM: GPUs per replica"),
    ("--gpu-memory-utilization", "gpu_memory_utilization", float, "vLLM: fraction of GPU memory to use"),
    ("--template", "template", str, "GRM prompt template (default deepseek-grm-default-v1)"),
    ("--k", "k", int, "default samples per request (default 8)"),
    ("--max-k", "max_k", int, "largest k a request may ask for (default 32)"),
    ("--temperature", "temperature", float, "default sampling temperature (default 0.5, the paper's)"),
    ("--max-temperature", "max_temperature", float, "largest temperature a request may ask for"),
    ("--top-p", "top_p", float, "nucleus sampling (default 1.0)"),
    ("--max-tokens", "max_tokens", int, "default generation budget per sample (default 1024)"),
    ("--max-tokens-limit", "max_tokens_limit", int, "largest max_tokens a request may ask for"),
    ("--max-group-size", "max_group_size", int, "responses judged together in one prompt (default 4)"),
    ("--meta-rm", "meta_rm", str, "auto (embedded meta RM for the embedded GRM), none, a folder or a hub name"),
    ("--k-meta", "k_meta", int, "samples kept to vote per response group when a meta RM is set (default k/2)"),
    ("--meta-rm-device", "meta_rm_device", str, "device of a transformers meta RM (cpu, cuda, cuda:1)"),
    ("--openrlhf-reward", "openrlhf_reward", str, "scale of /get_reward rewards: unit ([0,1]), mean (1..10), raw"),
    ("--max-responses-per-item", "max_responses_per_item", int, "limit on responses per item"),
    ("--max-items-per-batch", "max_items_per_batch", int, "limit on items per batch request"),
    ("--max-body-bytes", "max_body_bytes", int, "limit on request body size"),
    ("--request-timeout-s", "request_timeout_s", float, "deadline of a call (X-Request-Timeout may ask less)"),
    ("--max-concurrent-requests", "max_concurrent_requests", int, "requests scoring at once; others queue"),
    ("--max-queue-wait-s", "max_queue_wait_s", float, "longest wait for a slot before 429 overloaded"),
    ("--api-key-file", "api_key_file", str, "file of API keys, one per line (keys can also come from GRM_API_KEYS)"),
    ("--drain-timeout-s", "drain_timeout_s", int, "on SIGTERM, how long accepted requests may take to finish"),
    ("--max-response-chars", "max_response_chars", int, "limit on characters per response"),
    ("--max-conversation-chars", "max_conversation_chars", int, "limit on characters of the conversation"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grm-serve",
        description=(
            "Serve a generative reward model (DeepSeek-GRM style) over HTTP: k sampled principles + "
            "critiques + scores per request, voted into one reward per response. Every flag can also "
            "be set as GRM_<NAME> in the environment. Unknown --flags go to vLLM's engine arguments."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag, field, type_, help_ in _FLAGS:
        parser.add_argument(flag, dest=field, type=type_, default=None, help=help_)
    guidance = parser.add_mutually_exclusive_group()
    guidance.add_argument(
        "--format-guidance",
        dest="format_guidance",
        action="store_true",
        default=None,
        help="force the three-line output format with a regex (default on)",
    )
    guidance.add_argument(
        "--no-format-guidance", dest="format_guidance", action="store_false", help="let the model write freely"
    )
    parser.add_argument(
        "--no-metrics-public",
        dest="metrics_public",
        action="store_false",
        default=None,
        help="with API keys set, require a key for /metrics too (default: open to scrapers)",
    )
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
        return settings
    except (ValidationError, ValueError) as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit code."""
    settings = parse_settings(argv)
    from server.app import build_app
    from server.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    log.info("grm-serve %s on http://%s:%s (model=%s)", __version__, settings.host, settings.port, settings.model)
    return serve(settings, lambda on_fatal: build_app(settings, on_fatal=on_fatal))


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
