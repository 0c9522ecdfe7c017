"""``/healthz``, ``/readyz`` and the metrics endpoint, answered through ``process_request``.

portside's endpoints are chained after the application's own ``process_request``:
the application's runs first, and portside answers only when it returned
``None``. Requests they answer never count as failed connections: they are
ordinary HTTP responses, not logged (websockets #1402).
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..asyncio.server import ProcessRequest, ServerConnection, normalize_process_request
from ..protocol.http11 import Request, Response
from .app import ReadinessCheck
from .config import Endpoints

__all__ = ["CHECK_TIMEOUT", "Readiness", "endpoints_process_request"]

logger = logging.getLogger("portside.app")

CHECK_TIMEOUT = 1.0
"""Seconds a readiness check may take before it counts as failing."""


class Readiness:
    """Whether a worker is ready: accepting connections, and every check passing.

    Args:
        checks: ``(name, check)`` pairs, from :meth:`App.add_readiness_check`.
    """

    def __init__(self, checks: list[tuple[str, ReadinessCheck]]) -> None:
        self.checks = checks
        self.accepting = False

    async def failing(self) -> list[str]:
        """The reasons not to send traffic here; empty when ready."""
        if not self.accepting:
            return ["not accepting connections (starting or draining)"]
        failing = []
        for name, check in self.checks:
            try:
                result = check()
                if isinstance(result, Awaitable):
                    result = await asyncio.wait_for(_awaited(result), CHECK_TIMEOUT)
            except asyncio.TimeoutError:
                failing.append(f"{name}: no answer within {CHECK_TIMEOUT:g} s")
                continue
            except Exception as exc:
                failing.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if not result:
                failing.append(name)
        return failing


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def endpoints_process_request(
    user: ProcessRequest | None,
    endpoints: Endpoints,
    readiness: Readiness,
    metrics: Callable[[], tuple[bytes, str]] | None,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """The ``process_request`` of a worker: the application's, then portside's endpoints.

    Args:
        user: The application's ``process_request``, in either form, or ``None``.
        endpoints: Which paths answer what.
        readiness: What ``/readyz`` reports.
        metrics: Returns the metrics page and its content type, or ``None``.
    """
    normalized = normalize_process_request(user) if user is not None else None
    health_path = endpoints.health_path
    ready_path = endpoints.ready_path
    metrics_path = endpoints.metrics_path if metrics is not None else None

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if normalized is not None:
            response = await normalized(connection, request)
            if response is not None:
                return response
        if request.method != "GET":
            return None
        path = request.path.partition("?")[0]
        if path == health_path:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if path == ready_path:
            failing = await readiness.failing()
            if failing:
                return connection.respond(
                    http.HTTPStatus.SERVICE_UNAVAILABLE,
                    "not ready: " + "; ".join(failing) + "\n",
                )
            return connection.respond(http.HTTPStatus.OK, "ready\n")
        if path == metrics_path:
            assert metrics is not None
            body, content_type = metrics()
            response = connection.respond(http.HTTPStatus.OK, "")
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
            response.headers["Content-Type"] = content_type
            response.headers["Content-Length"] = str(len(body))
            response.body = body
            return response
        return None

    return process_request


def is_endpoint(endpoints: Endpoints, path: str) -> bool:
    """Whether ``path`` is one of portside's own endpoints (not to be logged)."""
    path = path.partition("?")[0]
    return path in (endpoints.health_path, endpoints.ready_path, endpoints.metrics_path)
