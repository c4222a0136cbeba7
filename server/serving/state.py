"""Per-app runtime state: the engine's lifecycle (start in the background, watchdog, shutdown).

Everything is built once, with the app: the work gate, admission and the :class:`Scorer`. Only the
engine and the meta RM come up in the background (model resolution and loading take seconds to
minutes), so the scorer reaches them through :meth:`AppState.generate` and :class:`LoadingMetaRM`,
and readiness is the one thing that is asynchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meta_rm.base import MetaRM, Trajectory
from server.config import Settings
from server.engines import Engine, EngineDeadError, EngineNotReadyError, create_engine
from server.engines.adapters import AdapterInfo, read_adapter
from server.engines.base import GenerationRequest, GenerationResult
from server.engines.fake import FakeEngine
from server.ops.metrics import Metrics
from server.pipeline.judges import DeepSeekGRM, Judge
from server.pipeline.judges.testing import judge_script
from server.pipeline.prompts import Template, get_template
from server.pipeline.scoring import Scorer
from server.serving.admission import Admission, WorkGate
from server.serving.errors import RETRY_AFTER_S, APIError, to_api_error

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 5.0
DEFAULT_INFLIGHT_SAMPLES = 256  # vLLM's own default max_num_seqs, for engines that state no limit


class LoadingMetaRM:
    """The meta RM as the scorer sees it while the app loads it in the background."""

    def __init__(self) -> None:
        self.loaded: MetaRM | None = None

    async def score(self, trajectories: Sequence[Trajectory]) -> list[float]:
        if self.loaded is None:
            raise EngineNotReadyError("the meta RM is still loading")
        return await self.loaded.score(trajectories)


@dataclass
class AppState:
    """What the routes need, built once per app.

    ``on_fatal(exit_code)`` is called when the engine cannot start or dies; the CLI uses it to stop
    the process so an orchestrator restarts it. Without it the app stays up and reports the failure
    on its health routes.
    """

    settings: Settings
    engine: Engine | None = None
    meta_rm: MetaRM | None = None
    on_fatal: Callable[[int], None] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    template: Template = field(init=False)
    judge: Judge = field(init=False)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    gate: WorkGate = field(init=False)
    admission: Admission = field(init=False)
    scorer: Scorer = field(init=False)
    failure: str | None = None
    adapter: AdapterInfo | None = None  # the served LoRA adapter (--adapter), once read at start
    draining: bool = False
    _failed: asyncio.Event = field(default_factory=asyncio.Event)
    _engine_started: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.template = get_template(self.settings.template)
        self.judge = self.settings.judge_profile()
        s = self.settings
        self.gate = WorkGate(
            s.max_inflight_samples or DEFAULT_INFLIGHT_SAMPLES, on_wait=self.metrics.queue_wait.observe
        )
        self.admission = Admission(
            self.gate,
            max_calls=s.max_concurrent_requests,
            max_wait_s=s.max_queue_wait_s,
            on_reject=lambda reason: self.metrics.rejected.labels(reason).inc(),
        )
        self.metrics.set_build_info(
            model=self.settings.model,
            template=self.judge.template_name(principles=False, reference=False),
            engine=self.settings.engine,
            judge=self.judge.name,
            mode=self.judge.mode,
        )
        self._meta_rm = LoadingMetaRM()
        self.scorer = Scorer(
            self.judge,
            generate=self.gate.gated(self.generate),
            max_group_size=s.max_group_size,
            format_guidance=s.format_guidance,
            meta_rm=self._meta_rm if self.has_meta_rm else None,
        )

    @property
    def has_meta_rm(self) -> bool:
        """Whether votes are filtered by a meta RM: one was given, or the settings name one."""
        return self.meta_rm is not None or self.settings.meta_rm_spec() is not None

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """One engine request, on the engine once it is up.

        Raises:
            EngineNotReadyError: before the engine has started.
        """
        if self.engine is None or not self._engine_started:
            raise EngineNotReadyError("the engine is starting")
        return await self.engine.generate(request)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the engine (and meta RM) are up.

        Raises:
            RuntimeError: if the engine failed to start or died; the message says why.
            TimeoutError: if ``timeout`` seconds pass first.
        """
        async with asyncio.timeout(timeout):
            ready = asyncio.ensure_future(self.ready.wait())
            failed = asyncio.ensure_future(self._failed.wait())
            try:
                await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                failed.cancel()
        if self.failure is not None:
            raise RuntimeError(self.failure)

    def _create_engine(self) -> Engine:
        s = self.settings
        adapter = s.adapter if s.engine == "vllm" else None  # the fake engine has no weights to merge into
        engine = create_engine(
            s.engine, model=s.model, cache_dir=s.cache_dir, engine_kwargs=s.engine_kwargs(), adapter=adapter
        )
        if isinstance(engine, FakeEngine) and not isinstance(self.judge, DeepSeekGRM):
            # ``--engine fake`` answers as the served judge would (scores by length, in its own format).
            engine.script = judge_script(self.judge)
        return engine

    async def _start(self) -> None:
        try:
            if self.settings.adapter is not None:
                self.adapter = await asyncio.to_thread(read_adapter, self.settings.adapter)
                if self.settings.meta_rm == "auto":
                    log.info(
                        "--meta-rm auto: no meta RM with --adapter (the embedded one rates the base model's samples)"
                    )
            if self.engine is None:
                # Model resolution may convert the embedded GGUF (tens of seconds): off the loop.
                self.engine = await asyncio.to_thread(self._create_engine)
            await self.engine.start()
            self._engine_started = True
            if self.meta_rm is None and (spec := self.settings.meta_rm_spec()) is not None:
                from meta_rm.loading import load_meta_rm
                from server.engines.model_files import resolve_model

                cache_dir = self.settings.cache_dir
                self.meta_rm = await asyncio.to_thread(
                    load_meta_rm,
                    spec,
                    device=self.settings.meta_rm_device,
                    resolve=lambda name: resolve_model(name, cache_dir),
                )
            if self.meta_rm is not None:
                await self.meta_rm.start()
                self._meta_rm.loaded = self.meta_rm
                log.info("meta RM ready: %s (%s)", self.meta_rm.info.name, self.meta_rm.info.backend)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"engine failed to start: {exc}", exc)
            return
        info = self.engine.info
        if self.settings.max_inflight_samples is None:
            self.gate.set_capacity(info.max_num_seqs or DEFAULT_INFLIGHT_SAMPLES)
        log.info("engine work gate: %d samples at once", self.gate.capacity)
        self.metrics.set_build_info(
            model=info.model,
            template=self.judge.template_name(principles=False, reference=False),
            engine=f"{info.name} {info.version}",
            judge=self.judge.name,
            mode=self.judge.mode,
        )
        self.ready.set()
        self._tasks.append(asyncio.create_task(self._watchdog()))

    async def _watchdog(self) -> None:
        assert self.engine is not None
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            try:
                await self.engine.check_health()
            except EngineDeadError as exc:
                self._fail(f"engine died: {exc}")
                return
            except Exception:  # not ready (shutting down) is not death
                continue

    def _fail(self, reason: str, exc: BaseException | None = None) -> None:
        """Record a fatal engine failure, turn readiness off and tell the process (exit code 1)."""
        self.failure = reason
        log.error("%s", reason, exc_info=exc)
        self.ready.clear()
        self._failed.set()
        if self.on_fatal is not None:
            self.on_fatal(1)

    def _dead(self) -> APIError:
        """The engine's failure as the error table words it; the detail (it may name paths) goes to the log."""
        log.warning("health check: %s", self.failure)
        return to_api_error(EngineDeadError(self.failure or "engine failed"))

    async def check_live(self) -> None:
        """Raises: APIError: 503 once the engine has died (the process cannot make progress)."""
        if self.failure is not None:
            raise self._dead()
        if self.engine is not None and self.ready.is_set():
            try:
                await self.engine.check_health()
            except EngineDeadError as exc:
                log.warning("health check: engine failed: %s", exc)
                raise to_api_error(exc) from None
            except EngineNotReadyError:
                pass

    def check_ready(self) -> None:
        """Raises: APIError: 503 while starting, draining or dead."""
        if self.failure is not None:
            raise self._dead()
        if self.draining:
            raise APIError(503, "not_ready", "the server is draining for shutdown", retry_after=RETRY_AFTER_S)
        if not self.ready.is_set():
            raise APIError(503, "not_ready", "the engine is starting", retry_after=RETRY_AFTER_S)

    def unavailable_error(self) -> Exception:
        """The engine error that explains why requests cannot be served now."""
        if self.failure:
            return EngineDeadError(self.failure)
        return EngineNotReadyError("draining" if self.draining else "starting")

    def begin_drain(self) -> None:
        """Stop taking new work (readiness 503); work already accepted carries on."""
        self.draining = True
        self.ready.clear()

    def begin(self) -> None:
        """Start the engine in the background; readiness turns on when it is up."""
        self._tasks.append(asyncio.create_task(self._start()))

    async def close(self) -> None:
        """Stop background work and shut the engine down."""
        self.ready.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.meta_rm is not None:
            await self.meta_rm.shutdown()
        if self.engine is not None:
            await self.engine.shutdown()
