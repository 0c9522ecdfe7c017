"""The hub's numbers as Prometheus series, for ``portside serve --metrics-path``.

Built on ``prometheus_client`` (``portside[metrics]``); in a worker of
``portside serve`` the series go to the multiprocess directory and are totalled
over all workers whichever one is scraped. The hub keeps plain counters
(:class:`~portside.hub.HubMetrics`); :class:`PrometheusExporter` copies them
into the series every ``interval`` seconds and when the hub stops, so that the
delivery path pays nothing for it.

Series (all prefixed ``portside_hub_``): counters ``published_total``,
``publish_errors_total``, ``received_total``, ``delivered_total``,
``skipped_total``, ``slow_closed_total``, ``lost_total``, ``recovered_total``,
``replayed_total``, ``gaps_total``, ``duplicates_total``,
``epoch_changes_total``, ``redis_reconnects_total``,
``redis_outage_seconds_total``; gauges ``topics``, ``subscriptions``,
``lagging``, ``publish_queued`` (summed over live workers), ``ready`` and
``redis_up`` (one per live worker, label ``pid``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["PrometheusExporter"]

COUNTERS = {
    "published": "Messages published from this worker",
    "publish_errors": "Publishes that raised (backend unavailable, queue full)",
    "received": "Messages received from the backend, once per topic",
    "delivered": "Frames handed to subscribers",
    "skipped": "Messages skipped for subscribers whose backlog was full",
    "slow_closed": "Subscribers closed with 1013 for a full backlog",
    "lost": "Messages missed and not recovered, once per topic",
    "recovered": "Messages missed and recovered from history",
    "replayed": "Messages replayed from history to subscriptions with since",
    "gaps": "Gap notices given to subscribers",
    "duplicates": "Messages received twice and delivered once",
    "epoch_changes": "Times a topic's epoch changed",
    "redis_reconnects": "Reconnections to Redis after an outage",
    "redis_outage_seconds": "Seconds Redis was unreachable",
}
SUMMED_GAUGES = {
    "topics": "Topics with subscribers",
    "subscriptions": "Subscriptions (connection, topic)",
    "lagging": "Subscriptions skipping messages, not yet told",
    "publish_queued": "Messages waiting for Redis to come back",
}
WORKER_GAUGES = {
    "ready": "1 when the hub can publish and its subscriptions are live",
    "redis_up": "1 when the Redis connection is up",
}

_series: dict[str, Any] | None = None


def _create_series() -> dict[str, Any]:
    """The series, created once per process (a registry refuses the same name twice)."""
    global _series
    if _series is None:
        from prometheus_client import Counter, Gauge

        series: dict[str, Any] = {}
        for name, text in COUNTERS.items():
            series[name] = Counter(f"portside_hub_{name}", text)
        for name, text in SUMMED_GAUGES.items():
            series[name] = Gauge(f"portside_hub_{name}", text, multiprocess_mode="livesum")
        for name, text in WORKER_GAUGES.items():
            series[name] = Gauge(f"portside_hub_{name}", text, multiprocess_mode="liveall")
        _series = series
    return _series


class PrometheusExporter:
    """Copies a hub's :meth:`~portside.hub.Hub.stats` into Prometheus series.

    Args:
        hub: The hub.
        interval: Seconds between copies.

    Raises:
        ImportError: If ``prometheus_client`` is not installed.
    """

    def __init__(self, hub: Any, interval: float = 1.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        self.hub = hub
        self.interval = interval
        self.series = _create_series()
        self._copied: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self._task: asyncio.Task[None] | None = None

    def flush(self) -> None:
        """Copy the hub's numbers now."""
        stats = self.hub.stats()
        for name in COUNTERS:
            value = float(stats.get(name, 0))
            delta = value - self._copied[name]
            if delta > 0:
                self.series[name].inc(delta)
                self._copied[name] = value
        for name in (*SUMMED_GAUGES, *WORKER_GAUGES):
            self.series[name].set(stats.get(name, 0))

    async def start(self) -> None:
        """Copy every ``interval`` seconds from now on."""
        if self._task is None:
            self.flush()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop copying, after a last copy."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()
