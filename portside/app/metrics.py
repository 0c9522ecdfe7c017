"""Prometheus metrics, totalled over every worker whichever worker is scraped.

Built on ``prometheus_client`` (``pip install 'portside[metrics]'``) in its
multiprocess mode: every process writes its series to files in a directory
shared by the supervisor and its workers (``PROMETHEUS_MULTIPROC_DIR``, which
the supervisor creates and exports before any worker starts), and the worker
that answers a scrape adds up the files of all of them. A dead worker's
counters stay in the totals; its gauges go.

Series (all prefixed ``portside_``):

============================================  =======  ===================================
name                                          type     labels
============================================  =======  ===================================
``connections_open``                          gauge
``connections_total``                         counter
``handshake_failures_total``                  counter  ``reason``
``close_codes_sent_total``                    counter  ``code``
``close_codes_received_total``                counter  ``code``
``messages_total``                            counter  ``direction`` (``in``, ``out``)
``bytes_total``                               counter  ``direction``
``handler_exceptions_total``                  counter
``drains_total``                              counter  ``reason`` (``stop``, ``restart``)
``worker_restarts_total``                     counter  ``cause``
``rolling_restarts_total``                    counter
``workers``                                   gauge
============================================  =======  ===================================

An application (or the pub/sub hub) adds its own series with ``prometheus_client``
as usual, at import time or in a startup hook; in a worker of ``portside serve``
they land in the same directory and the same totals. Gauges need a
``multiprocess_mode`` (``"livesum"`` for a sum over live workers).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..asyncio.server import ServerConnection

__all__ = [
    "MULTIPROC_ENV",
    "SupervisorMetrics",
    "WorkerMetrics",
    "available",
    "counters_of",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

PREFIX = "portside_"

_NOTHING = (0, 0, 0, 0, 0)


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    return importlib.util.find_spec("prometheus_client") is not None


def multiprocess() -> bool:
    """Whether this process writes its metrics to a shared directory."""
    return bool(os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()))


def counters_of(connection: ServerConnection) -> tuple[int, int, int, int]:
    """Messages received, messages sent, bytes received, bytes sent, of ``connection``."""
    return (
        connection.messages_received,
        connection.messages_sent,
        connection.bytes_received,
        connection.bytes_sent,
    )


class WorkerMetrics:
    """The series a worker (or a single-process server) updates."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.multiprocess = multiprocess()
        # In multiprocess mode, values go to files whatever the registry; the
        # default registry is left alone so that a second instance (tests) works.
        self.registry = None if self.multiprocess else CollectorRegistry()
        registry = self.registry
        self.open = Gauge(
            PREFIX + "connections_open",
            "WebSocket connections open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.connections = Counter(
            PREFIX + "connections",
            "WebSocket connections opened (handshake succeeded).",
            registry=registry,
        )
        self.handshake_failures = Counter(
            PREFIX + "handshake_failures",
            "Opening handshakes refused or failed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.close_sent = Counter(
            PREFIX + "close_codes_sent", "Close frames sent, by code.", ["code"], registry=registry
        )
        self.close_received = Counter(
            PREFIX + "close_codes_received",
            "Close frames received, by code (1006: none).",
            ["code"],
            registry=registry,
        )
        self.messages = Counter(
            PREFIX + "messages", "Data messages, by direction.", ["direction"], registry=registry
        )
        self.bytes = Counter(
            PREFIX + "bytes",
            "Bytes on the wire after the handshake, by direction.",
            ["direction"],
            registry=registry,
        )
        self.handler_exceptions = Counter(
            PREFIX + "handler_exceptions",
            "Connection handlers that raised an exception.",
            registry=registry,
        )
        self.drains = Counter(
            PREFIX + "drains",
            "Workers that started draining, by reason (stop, restart).",
            ["reason"],
            registry=registry,
        )

    def connection_ended(self, connection: ServerConnection, failure: str | None) -> None:
        """Count what a connection's end tells: failure, close codes, traffic, handler error."""
        if failure is not None:
            self.handshake_failures.labels(failure).inc()
            return
        if connection.response is None or connection.response.status_code != 101:
            return
        self._account(connection)
        protocol = connection.protocol
        if protocol.close_sent is not None:
            self.close_sent.labels(str(protocol.close_sent.code)).inc()
        received = protocol.close_rcvd
        self.close_received.labels("1006" if received is None else str(received.code)).inc()
        if connection.handler_error is not None:
            self.handler_exceptions.inc()

    def _account(self, connection: ServerConnection) -> None:
        # What this connection added since it was last accounted for: the
        # counters only grow, whichever worker is scraped and whenever.
        now = (1, *counters_of(connection))
        before = getattr(connection, "_metrics_seen", _NOTHING)
        connection._metrics_seen = now  # type: ignore[attr-defined]
        opened, received, sent, bytes_received, bytes_sent = (
            value - previous for value, previous in zip(now, before, strict=True)
        )
        if opened:
            self.connections.inc(opened)
        if received:
            self.messages.labels("in").inc(received)
        if sent:
            self.messages.labels("out").inc(sent)
        if bytes_received:
            self.bytes.labels("in").inc(bytes_received)
        if bytes_sent:
            self.bytes.labels("out").inc(bytes_sent)

    def flush(self, live: Iterable[ServerConnection]) -> None:
        """Account for the traffic of the connections still open; set the open gauge."""
        open_now = 0
        for connection in live:
            response = connection.response
            if response is not None and response.status_code == 101:
                open_now += 1
                self._account(connection)
        self.open.set(open_now)

    def render(self) -> tuple[bytes, str]:
        """The metrics page: every process's series (multiprocess) or this one's."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            REGISTRY,
            CollectorRegistry,
            generate_latest,
        )
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry) + generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class SupervisorMetrics:
    """The series the supervisor updates: worker restarts and rolling restarts."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        self.worker_restarts = Counter(
            PREFIX + "worker_restarts",
            "Workers replaced, by cause (died, exited, blocked, drain_timeout, signal, "
            "max_connections_served, max_rss, reload).",
            ["cause"],
            registry=None,
        )
        self.rolling_restarts = Counter(
            PREFIX + "rolling_restarts",
            "Rolling restarts (SIGHUP, --reload) started.",
            registry=None,
        )
        self.workers = Gauge(
            PREFIX + "workers",
            "Worker processes running.",
            multiprocess_mode="livemax",
            registry=None,
        )

    @staticmethod
    def worker_gone(pid: int) -> None:
        """Drop the live gauges of a worker that exited."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
