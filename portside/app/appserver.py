"""One process's share of the work: serve an :class:`App` on listening sockets, then drain.

:class:`AppServer` is what a worker of ``portside serve`` runs, and what
:func:`portside.run` runs in a single process: it runs the App's startup hooks,
serves its handler on every listening socket with portside's endpoints chained
after the App's ``process_request``, keeps the access log and the metrics, and
on request drains (``/readyz`` fails first, then accepting stops, then Close
frames go out, spread over ``drain_spread``; handlers left at
``graceful_timeout`` are cancelled) and runs the shutdown hooks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..asyncio.server import Server, ServerConnection, serve, unix_serve
from .accesslog import log_connection
from .app import App, call_hook
from .config import SERVE_OPTIONS, Endpoints, Limits, Listen
from .health import Readiness, endpoints_process_request, is_endpoint
from .metrics import WorkerMetrics

__all__ = ["AppServer", "DrainSettings", "StartupError", "failure_reason", "make_ssl_context"]

logger = logging.getLogger("portside.app")


class StartupError(Exception):
    """A startup hook raised, or the servers could not start.

    Attributes:
        details: The traceback, for ``--log-level debug``.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class DrainSettings:
    """How a drain goes."""

    graceful_timeout: float
    spread: float


def make_ssl_context(listen: Listen) -> ssl.SSLContext | None:
    """The server's TLS context from ``--certfile``, ``--keyfile``, ``--ca-certs``.

    Raises:
        ssl.SSLError, OSError: If a file cannot be read or does not fit.
    """
    if listen.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(listen.certfile, listen.keyfile)
    if listen.ca_certs is not None:
        context.load_verify_locations(listen.ca_certs)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def failure_reason(connection: ServerConnection, endpoints: Endpoints) -> str | None:
    """Why the handshake of a connection that ended failed; ``None`` if it did not.

    Connections that sent no complete request (TCP probes, clients that left)
    and requests answered by portside's endpoints are not failures.
    """
    response = connection.response
    if response is None or response.status_code == 101:
        return None
    request = connection.request
    if request is not None and is_endpoint(endpoints, request.path):
        return None
    exc = connection.protocol.handshake_exc
    if exc is not None:
        name = type(exc).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    if response.status_code == 503:
        if connection.server.closing:
            return "shutting_down"
        if "Retry-After" in response.headers:
            return "over_capacity"
    return f"http_{response.status_code}"


class AppServer:
    """Serves an :class:`App` in the running event loop.

    Args:
        app: What to serve.
        limits: ``serve()``'s options from the command line (those it set
            explicitly override the App's).
        endpoints: The paths of ``/healthz``, ``/readyz`` and the metrics.
        drain: How draining goes.
        access_log: Log one line per connection.
        json_logs: Pass the access log's fields as ``extra`` (for the JSON format).
        metrics: Keep metrics (needs ``prometheus_client``).
        ssl_context: Serve TLS.
    """

    def __init__(
        self,
        app: App,
        *,
        limits: Limits,
        endpoints: Endpoints,
        drain: DrainSettings,
        access_log: bool = False,
        json_logs: bool = False,
        metrics: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.endpoints = endpoints
        self.drain_settings = drain
        self.access_log = access_log
        self.json_logs = json_logs
        self.ssl_context = ssl_context
        self.readiness = Readiness(app.readiness_checks)
        self.ended_opened = 0  # connections opened (101) that are done
        self.metrics = WorkerMetrics() if metrics else None
        self.servers: list[Server] = []
        self.draining = False
        self.hooks_done = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def serve_options(self) -> dict[str, Any]:
        """``serve()``'s keyword arguments: explicit settings over the App's over defaults."""
        options = dict(self.app.serve_options)
        configured = self.limits.serve_options()
        for name in SERVE_OPTIONS:
            if name in self.limits.explicit or name not in options:
                options[name] = configured[name]
        if self.limits.max_connections is not None or "max_connections" not in options:
            options["max_connections"] = self.limits.max_connections
        render: Callable[[], tuple[bytes, str]] | None = None
        if self.metrics is not None:
            render = self._render_metrics
        options["process_request"] = endpoints_process_request(
            self.app.process_request, self.endpoints, self.readiness, render
        )
        options["on_connection_end"] = self._connection_ended
        return options

    async def start(self, sockets: list[socket.socket]) -> None:
        """Run the startup hooks, then serve on ``sockets`` (already listening).

        Raises:
            StartupError: If a hook raised or a server could not start.
        """
        self._loop = asyncio.get_running_loop()
        for hook in self.app.startup_hooks:
            try:
                await call_hook(hook)
            except Exception as exc:
                name = getattr(hook, "__qualname__", repr(hook))
                raise StartupError(
                    f"startup hook {name} failed: {type(exc).__name__}: {exc}",
                    traceback.format_exc(),
                ) from None
        self.hooks_done = True
        options = self.serve_options()
        try:
            for sock in sockets:
                if sock.family == getattr(socket, "AF_UNIX", None):
                    server = await unix_serve(
                        self.app.handler, sock=sock, ssl=self.ssl_context, **options
                    )
                else:
                    server = await serve(
                        self.app.handler, sock=sock, ssl=self.ssl_context, **options
                    )
                self.servers.append(server)
        except Exception as exc:
            for server in self.servers:
                server.close()
            raise StartupError(
                f"cannot serve: {type(exc).__name__}: {exc}", traceback.format_exc()
            ) from None
        self.readiness.accepting = not self.draining

    @property
    def served(self) -> int:
        """Connections opened so far (handshake succeeded), ended or not."""
        return self.ended_opened + sum(
            1
            for server in self.servers
            for connection in server.connections
            if connection.response is not None and connection.response.status_code == 101
        )

    def _connection_ended(self, connection: ServerConnection) -> None:
        response = connection.response
        if response is not None and response.status_code == 101:
            self.ended_opened += 1
        failure = failure_reason(connection, self.endpoints)
        if self.metrics is not None:
            self.metrics.connection_ended(connection, failure)
        request = connection.request
        if (
            self.access_log
            and request is not None
            and not is_endpoint(self.endpoints, request.path)
        ):
            log_connection(connection, connection.loop.time(), self.json_logs)

    def flush_metrics(self) -> None:
        """Bring the metrics of connections and traffic up to date."""
        if self.metrics is not None:
            live = [c for server in self.servers for c in server.connections]
            self.metrics.flush(live)

    def _render_metrics(self) -> tuple[bytes, str]:
        assert self.metrics is not None
        self.flush_metrics()
        return self.metrics.render()

    def drain(self, code: int = 1001, reason: str = "") -> None:
        """Start draining: fail ``/readyz``, stop accepting, close with ``code``.

        Idempotent; :meth:`wait_closed` waits for the end.
        """
        if self.draining:
            return
        self.draining = True
        # The order matters: not ready first, then stop accepting.
        self.readiness.accepting = False
        if self.metrics is not None:
            self.metrics.drains.labels("stop" if code == 1001 else "restart").inc()
        for server in self.servers:
            server.close(
                code=code,
                reason=reason,
                spread=self.drain_settings.spread,
                graceful_timeout=self.drain_settings.graceful_timeout,
                # A client whose handshake was under way gets a Close frame too,
                # never a 503: no failed handshakes during a rolling restart.
                finish_handshakes=True,
            )

    async def stopped_accepting(self) -> None:
        """After :meth:`drain`: return once no server accepts connections any more.

        ``Server.close()`` stops accepting on the loop's next turns; this yields
        to the loop until it has.
        """
        while any(server.is_serving() for server in self.servers):
            await asyncio.sleep(0)

    def stop_now(self) -> None:
        """Cancel the handlers left and close at once (a second Ctrl-C)."""
        self.drain()
        for server in self.servers:
            server.close(graceful_timeout=0)

    async def wait_closed(self) -> None:
        """Wait until every server is closed."""
        for server in self.servers:
            await server.wait_closed()

    async def shutdown(self) -> None:
        """Run the shutdown hooks in reverse order, if every startup hook succeeded."""
        if not self.hooks_done:
            return
        self.hooks_done = False
        for hook in reversed(self.app.shutdown_hooks):
            try:
                await call_hook(hook)
            except Exception:
                name = getattr(hook, "__qualname__", repr(hook))
                logger.error("shutdown hook %s failed", name, exc_info=True)
        self.flush_metrics()
