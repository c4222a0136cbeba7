"""Every replica's ``grm_*`` series reach Prometheus through Ray's own metrics pipeline.

Behind Ray's HTTP proxy, ``GET /metrics`` answers from whichever replica the proxy picks, and each
replica has its own registry: counters would jump between replicas and rates would be wrong. So each
replica copies its registry into ``ray.util.metrics`` gauges every ``interval_s`` seconds, tagged with
its ``replica`` id. Ray's metrics agent on each node exports them for Prometheus (the node's
``metrics_export_port``), named ``ray_grm_*``: summing over ``replica`` gives the deployment's totals.
Histograms keep their ``_bucket`` / ``_sum`` / ``_count`` series and ``le`` label, so
``histogram_quantile`` works on them as on the plain server's. ``deploy/README.md`` gives the
relabelling that drops the ``ray_`` prefix so the dashboard and alerts work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

PREFIX = "grm_"
GaugeFactory = Callable[[str, str, tuple[str, ...]], Any]


def grm_samples(registry: CollectorRegistry) -> Iterator[tuple[str, dict[str, str], float]]:
    """``(sample name, labels, value)`` of every ``grm_*`` sample (``*_created`` timestamps left out)."""
    for family in registry.collect():
        if not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                yield sample.name, dict(sample.labels), float(sample.value)


def ray_gauge(name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
    from ray.util.metrics import Gauge

    return Gauge(name, description, tag_keys=tag_keys)


class RayMetricsBridge:
    """Copies one replica's ``grm_*`` samples into Ray gauges tagged ``replica``.

    Args:
        registry: the replica app's Prometheus registry.
        replica: this replica's id (the ``replica`` tag).
        interval_s: seconds between copies.
        gauge: makes a gauge from (name, description, tag keys); tests pass a recorder.
    """

    def __init__(
        self, registry: CollectorRegistry, replica: str, *, interval_s: float = 2.0, gauge: GaugeFactory = ray_gauge
    ) -> None:
        self.registry = registry
        self.replica = replica
        self.interval_s = interval_s
        self._make = gauge
        self._gauges: dict[str, Any] = {}

    def export_once(self) -> int:
        """Copy every sample now; returns how many were set."""
        count = 0
        for name, labels, value in grm_samples(self.registry):
            gauge = self._gauges.get(name)
            if gauge is None:
                keys = (*sorted(labels), "replica")
                gauge = self._gauges[name] = self._make(name, f"grm-serve {name}, per Ray Serve replica", keys)
            gauge.set(value, tags={**labels, "replica": self.replica})
            count += 1
        return count

    async def run(self) -> None:
        """Copy every ``interval_s`` until cancelled, then once more (the last requests count too)."""
        try:
            while True:
                self.export_once()
                await asyncio.sleep(self.interval_s)
        finally:
            with contextlib.suppress(Exception):
                self.export_once()
