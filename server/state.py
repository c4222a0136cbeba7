"""Per-app runtime state: the engine's lifecycle (start in the background, watchdog, shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from meta_rm.base import MetaRM
from server.admission import Admission
from server.config import Settings
from server.engines import Engine, EngineDeadError, EngineNotReadyError, create_engine
from server.metrics import Metrics
from server.prompts import Template, get_template
from server.scoring import Scorer

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 5.0


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
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    admission: Admission = field(init=False)
    failure: str | None = None
    draining: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.template = get_template(self.settings.template)
        self.admission = Admission(self.settings.max_concurrent_requests, self.settings.max_queue_wait_s)
        self.metrics.set_build_info(model=self.settings.model, template=self.template.name, engine=self.settings.engine)

    @property
    def scorer(self) -> Scorer:
        assert self.engine is not None
        return Scorer(
            self.engine,
            self.template,
            max_group_size=self.settings.max_group_size,
            format_guidance=self.settings.format_guidance,
            meta_rm=self.meta_rm,
        )

    async def _start(self) -> None:
        try:
            if self.engine is None:
                # Model resolution may convert the embedded GGUF (tens of seconds): off the loop.
                self.engine = await asyncio.to_thread(create_engine, self.settings)
            await self.engine.start()
            if self.meta_rm is None and (spec := self.settings.meta_rm_spec()) is not None:
                from meta_rm.loading import load_meta_rm

                self.meta_rm = await asyncio.to_thread(load_meta_rm, spec, device=self.settings.meta_rm_device)
            if self.meta_rm is not None:
                await self.meta_rm.start()
                log.info("meta RM ready: %s (%s)", self.meta_rm.info.name, self.meta_rm.info.backend)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = f"engine failed to start: {exc}"
            log.error("%s", self.failure, exc_info=exc)
            self._fatal(1)
            return
        info = self.engine.info
        self.metrics.set_build_info(model=info.model, template=self.template.name, engine=f"{info.name} {info.version}")
        self.ready.set()
        self._tasks.append(asyncio.create_task(self._watchdog()))

    async def _watchdog(self) -> None:
        assert self.engine is not None
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            try:
                await self.engine.check_health()
            except EngineDeadError as exc:
                self.failure = f"engine died: {exc}"
                log.error("%s; stopping", self.failure)
                self._fatal(1)
                return
            except Exception:  # not ready (shutting down) is not death
                continue

    def _fatal(self, code: int) -> None:
        self.ready.clear()
        if self.on_fatal is not None:
            self.on_fatal(code)

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
