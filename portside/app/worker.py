"""A worker process of ``portside serve``.

The supervisor starts each worker as a fresh interpreter (so that a restarted
worker loads the code as it is on disk now), with:

- its settings, as JSON in ``PORTSIDE_WORKER_SPEC`` (removed from the
  environment before the application is imported);
- its listening sockets, as inherited file descriptors;
- one end of a socket pair, the :class:`~portside.app.channel.Channel` to the
  supervisor.

The worker loads ``MODULE:ATTR``, runs the startup hooks, serves, says
``ready``, and sends a ``beat`` from its event loop every ``min(1, timeout/4)``
seconds: a loop blocked for longer than ``--timeout`` misses its beats and the
supervisor kills it. It drains on the supervisor's ``drain`` (with the code
given: 1001 on a stop, 1012 in a rolling restart) or when the supervisor is
gone, then runs the shutdown hooks and exits 0.

SIGTERM or SIGINT sent to the worker alone does not make it stop accepting at
once: it asks the supervisor (``stop_request``), which starts a successor in
its slot and, once the successor is ready, tells this worker to drain, so that
its slot's queue of connections always has a worker accepting from it. Sent to
the whole process group, the same signal reaches the supervisor, which drains
every worker. Without an answer within ``--timeout`` (or without a
supervisor), the worker drains with 1001 on its own.

Exit statuses: 0 after a drain; 2 when ``MODULE:ATTR`` cannot be loaded or a
setting is wrong; 3 when a startup hook raised or serving failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import resource
import socket
import sys
from typing import Any

from ..asyncio.allocator import tune_allocator
from ..asyncio.runner import uvloop_available
from . import logs
from .appserver import AppServer, DrainSettings, StartupError, make_ssl_context
from .channel import Channel
from .config import Config, ConfigError, build
from .loading import LoadError, load
from .signals import SignalQueue

__all__ = ["SPEC_ENV", "main", "rss_mib"]

SPEC_ENV = "PORTSIDE_WORKER_SPEC"

EXIT_CONFIG = 2
EXIT_STARTUP = 3

logger = logging.getLogger("portside.app")


def rss_mib() -> float:
    """This process's resident memory in MiB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as file:
            resident = int(file.read().split()[1])
        return resident * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def beat_interval(timeout: float) -> float:
    """Seconds between heartbeats for a ``--timeout`` of ``timeout``."""
    return min(1.0, timeout / 4)


class Worker:
    """The worker's state: its channel, its server, its limits."""

    def __init__(self, config: Config, control: socket.socket, sockets: list[socket.socket]):
        self.config = config
        self.control = control
        self.sockets = sockets
        self.actions: SignalQueue | None = None
        self.channel: Channel | None = None
        self.server: AppServer | None = None
        workers = config.workers
        self.max_served: int | None = None
        if workers.max_connections_served is not None:
            self.max_served = workers.max_connections_served + random.randint(
                0, workers.max_connections_served_jitter
            )
        self.max_rss: float | None = None
        if workers.max_rss_mib is not None:
            self.max_rss = workers.max_rss_mib + random.randint(0, workers.max_rss_jitter_mib)
        self.recycling = False
        self.supervisor_alive = True
        # Set once a stop signal was passed on to the supervisor: the drain
        # that comes after --timeout if the supervisor does not answer.
        self.unanswered: asyncio.TimerHandle | None = None

    def on_message(self, message: dict[str, Any]) -> None:
        assert self.actions is not None
        event = message.get("event")
        if event == "drain":
            self.actions.put(f"drain:{int(message.get('code', 1001))}")
        elif event in ("stop_now", "reopen_logs"):
            self.actions.put(str(event))

    def on_eof(self) -> None:
        assert self.actions is not None
        self.supervisor_alive = False
        self.actions.put("supervisor_gone")

    def stop_signal(self, server: AppServer) -> None:
        """SIGTERM or SIGINT: ask the supervisor for a successor, or drain if there is none."""
        assert self.actions is not None
        assert self.channel is not None
        if server.draining or self.unanswered is not None:
            return  # on its way out already
        if not self.supervisor_alive:
            server.drain(1001)
            return
        self.channel.send("stop_request")
        self.unanswered = asyncio.get_running_loop().call_later(
            self.config.workers.timeout, self.actions.put, "stop_unanswered"
        )

    async def heartbeat(self) -> None:
        assert self.channel is not None
        interval = beat_interval(self.config.workers.timeout)
        while True:
            self.channel.send("beat")
            server = self.server
            if server is not None:
                server.flush_metrics()
                if not self.recycling and server.readiness.accepting:
                    cause = self.limit_reached(server)
                    if cause is not None:
                        self.recycling = True
                        logger.info("worker reached %s: asking to be replaced", cause)
                        self.channel.send("recycle", cause=cause)
            await asyncio.sleep(interval)

    def limit_reached(self, server: AppServer) -> str | None:
        if self.max_served is not None and server.served >= self.max_served:
            return "max_connections_served"
        if self.max_rss is not None and rss_mib() > self.max_rss:
            return "max_rss"
        return None

    def fatal(self, status: int, message: str, details: str) -> int:
        assert self.channel is not None
        if details:
            logger.debug("%s\n%s", message, details.rstrip())
        self.channel.send("fatal", status=status, message=message)
        return status

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.actions = SignalQueue(loop, "worker")
        self.channel = Channel(self.control, self.on_message, self.on_eof)
        self.channel.start(loop)
        beating = loop.create_task(self.heartbeat())
        try:
            return await self.serve()
        finally:
            beating.cancel()
            if self.unanswered is not None:
                self.unanswered.cancel()
            self.actions.close()
            self.channel.close()

    async def serve(self) -> int:
        assert self.actions is not None
        assert self.channel is not None
        config = self.config
        try:
            app = load(config.target)
        except LoadError as exc:
            return self.fatal(EXIT_CONFIG, str(exc), exc.details)
        try:
            ssl_context = make_ssl_context(config.listen)
        except (OSError, ValueError) as exc:
            return self.fatal(EXIT_CONFIG, f"TLS: {exc}", "")
        self.server = server = AppServer(
            app,
            limits=config.limits,
            endpoints=config.endpoints,
            drain=DrainSettings(config.workers.graceful_timeout, config.workers.drain_spread),
            access_log=config.logging.access_log,
            json_logs=config.logging.format == "json",
            metrics=config.endpoints.metrics_path is not None,
            ssl_context=ssl_context,
        )
        try:
            await server.start(self.sockets)
        except StartupError as exc:
            await server.shutdown()
            return self.fatal(EXIT_STARTUP, str(exc), exc.details)
        self.channel.send("ready")
        closed: asyncio.Task[None] | None = None
        while (action := await self.actions.get_until(closed)) is not None:
            if action == "stop":
                self.stop_signal(server)
            elif action == "supervisor_gone":
                logger.warning("the supervisor is gone: draining")
                server.drain(1001)
            elif action == "stop_unanswered":
                if not server.draining:
                    logger.warning(
                        "the supervisor did not answer a stop signal within %g s (--timeout): "
                        "draining",
                        config.workers.timeout,
                    )
                    server.drain(1001)
            elif action.startswith("drain:"):
                server.drain(int(action.partition(":")[2]))
            elif action == "stop_now":
                server.stop_now()
            elif action == "reopen_logs":
                logs.reopen()
            if server.draining and closed is None:
                # Said once accepting stopped: a rolling restart moves on then.
                await server.stopped_accepting()
                self.channel.send("draining")
                closed = asyncio.ensure_future(server.wait_closed())
        await server.shutdown()
        return 0


def main() -> int:
    """The worker process's entry point; returns its exit status."""
    spec = json.loads(os.environ.pop(SPEC_ENV))
    control = socket.socket(fileno=spec["control_fd"])
    sockets = [socket.socket(fileno=fd) for fd in spec["fds"]]
    try:
        config = build(spec["values"], spec["explicit"])
    except ConfigError as exc:  # pragma: no cover - the supervisor checked it
        Channel(control, lambda m: None, lambda: None).send(
            "fatal", status=EXIT_CONFIG, message=str(exc)
        )
        return EXIT_CONFIG
    logs.configure(config.logging.level, config.logging.format, config.logging.file)
    tune_allocator()
    worker = Worker(config, control, sockets)
    if config.loop == "uvloop" or (config.loop == "auto" and uvloop_available()):
        import uvloop

        return uvloop.run(worker.run())
    return asyncio.run(worker.run())
