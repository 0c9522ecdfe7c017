"""``portside.run()``: a handler or :class:`App` served in one process, or a coroutine run.

``portside.run(handler_or_app, host, port, **options)`` is ``portside serve``
without the supervisor, for scripts: the same endpoints, access log, metrics,
signal handling (SIGTERM or Ctrl-C drains; a second Ctrl-C stops at once) and
drain. :class:`Runner` is the same thing as an object, for a server run in a
thread: :meth:`Runner.stop` stops it from any thread.

``portside.run(main_coroutine)`` runs a coroutine on uvloop when installed, as
:func:`portside.asyncio.runner.run` does.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, overload

from ..asyncio import runner
from ..protocol.options import ConnectionOptions
from .app import App, as_app
from .appserver import AppServer, DrainSettings
from .config import SERVE_OPTIONS, Bind, Endpoints, Limits, Listen, defaults
from .listeners import Listeners
from .signals import SignalQueue

__all__ = ["Runner", "run"]

T = TypeVar("T")


class Runner:
    """Serves a handler or :class:`App` in this process until stopped.

    ``Runner(...).run()`` is what ``portside.run(handler, host, port, ...)``
    does. In the main thread, :meth:`run` handles SIGTERM and SIGINT (a drain
    with close code 1001; a second SIGINT cancels the handlers at once) and
    SIGQUIT (at once); it uses ``loop.add_signal_handler`` where the loop has it
    and ``signal.signal`` otherwise (Windows). In another thread there are no
    signal handlers: stop it with :meth:`stop`, from any thread::

        runner = portside.Runner(handler, "localhost", 8765)
        thread = threading.Thread(target=runner.run)
        thread.start()
        runner.wait_ready()
        ...
        runner.stop()   # from any thread; run() returns once drained
        thread.join()

    Args:
        target: ``async def handler(ws)`` or an :class:`App`.
        host: Interface(s) to listen on; ``None``: all.
        port: TCP port; ``0`` picks a free one (see :attr:`sockets`).
        sock: A listening socket to serve instead of ``host`` and ``port``.
        ssl: An :class:`ssl.SSLContext` to serve ``wss://``.
        backlog: ``listen()`` backlog.
        reuse_port: Set ``SO_REUSEPORT`` on the socket.
        graceful_timeout: Seconds from a stop until the handlers left are cancelled.
        drain_spread: Seconds over which the Close frames of a drain are spread.
        health_path: Liveness endpoint (``None``: off).
        ready_path: Readiness endpoint (``None``: off).
        metrics_path: Prometheus endpoint (``None``, the default: off).
        access_log: Log one line per connection on ``portside.access``.
        loop: ``"auto"`` (uvloop if installed), ``"asyncio"`` or ``"uvloop"``.
        tune_allocator: Call :func:`portside.tune_allocator` first.
        **options: ``serve()``'s options (``max_size``, ``compression``,
            ``process_request``, ``max_connections``...); they override an App's.
    """

    def __init__(
        self,
        target: Any,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl: ssl.SSLContext | None = None,
        backlog: int = 2048,
        reuse_port: bool = False,
        graceful_timeout: float = 30.0,
        drain_spread: float = 0.0,
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        metrics_path: str | None = None,
        access_log: bool = False,
        loop: str = "auto",
        tune_allocator: bool = True,
        **options: Any,
    ) -> None:
        if sock is None and port is None:
            raise TypeError("Runner() needs a port (or sock=)")
        if sock is not None and (host is not None or port is not None):
            raise ValueError("pass either sock, or host and port, not both")
        if loop not in ("auto", "asyncio", "uvloop"):
            raise ValueError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {loop!r}")
        if not 0 <= drain_spread < graceful_timeout or not graceful_timeout > 0:
            raise ValueError("drain_spread must be >= 0 and shorter than graceful_timeout")
        app = as_app(target)
        process_request = options.pop("process_request", app.process_request)
        # Options given here override the App's; App() rejects unknown ones.
        merged = App(
            app.handler, process_request=process_request, **{**app.serve_options, **options}
        )
        merged.startup_hooks = list(app.startup_hooks)
        merged.shutdown_hooks = list(app.shutdown_hooks)
        merged.readiness_checks = list(app.readiness_checks)
        # serve() checks the values once the loop runs; check them here too,
        # so that a wrong one fails in the caller's thread.
        values = {
            **defaults(),
            **{k: v for k, v in merged.serve_options.items() if k in SERVE_OPTIONS},
        }
        ConnectionOptions.validate(**{name: values[name] for name in _CONNECTION_OPTIONS})
        self.app = merged
        self.host = host
        self.port = port
        self.sock = sock
        self.ssl = ssl
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.drain = DrainSettings(graceful_timeout, drain_spread)
        self.endpoints = Endpoints(health_path, ready_path, metrics_path)
        self.access_log = access_log
        self.loop_name = loop
        self.tune_allocator = tune_allocator
        self.server: AppServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._actions: SignalQueue | None = None
        self._pending_stop: int | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._sockets: list[socket.socket] = []

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets, once :meth:`wait_ready` returned ``True``."""
        return list(self._sockets)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the server accepts connections; ``False`` after ``timeout`` seconds."""
        return self._ready.wait(timeout)

    def stop(self, code: int = 1001) -> None:
        """Drain and stop: callable from any thread, before or during :meth:`run`.

        Args:
            code: The close code sent to connections (1001, going away).
        """
        with self._lock:
            if self._actions is None:
                self._pending_stop = code
                return
            self._actions.put_threadsafe(f"drain:{code}")

    def run(self) -> None:
        """Serve until stopped by a signal or :meth:`stop`; drain; return.

        Raises:
            portside.app.appserver.StartupError: If a startup hook raised.
            OSError: If the address cannot be bound.
        """
        if self.tune_allocator:
            from ..asyncio import allocator

            allocator.tune_allocator()
        use_uvloop = self.loop_name == "uvloop" or (
            self.loop_name == "auto" and runner.uvloop_available()
        )
        if use_uvloop:
            import uvloop

            uvloop.run(self._main())
        else:
            asyncio.run(self._main())

    def _listen(self) -> list[socket.socket]:
        if self.sock is not None:
            self.sock.setblocking(False)
            return [self.sock]
        listen = Listen(
            binds=(Bind("tcp", host=self.host or "", port=self.port or 0),),
            backlog=self.backlog,
            certfile=None,
            keyfile=None,
            ca_certs=None,
        )
        listeners = Listeners(listen, reuse_port=self.reuse_port)
        listeners.open()
        return listeners.for_slot(0)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._sockets = self._listen()
        limits = Limits(
            max_connections=None,
            connection=ConnectionOptions.validate(
                **{name: defaults()[name] for name in _CONNECTION_OPTIONS}
            ),
            compression="deflate",
            open_timeout=10.0,
            explicit=frozenset(),
        )
        self.server = server = AppServer(
            self.app,
            limits=limits,
            endpoints=self.endpoints,
            drain=self.drain,
            access_log=self.access_log,
            metrics=self.endpoints.metrics_path is not None,
            ssl_context=self.ssl,
        )
        with self._lock:
            self._loop = loop
            self._actions = actions = SignalQueue(loop, "single")
            if self._pending_stop is not None:
                actions.put(f"drain:{self._pending_stop}")
        try:
            await server.start(self._sockets)
            self._ready.set()
            closed: asyncio.Task[None] | None = None
            while (action := await actions.get_until(closed)) is not None:
                if action == "stop":
                    server.drain(1001)
                elif action.startswith("drain:"):
                    server.drain(int(action.partition(":")[2]))
                elif action == "stop_now":
                    server.stop_now()
                if server.draining and closed is None:
                    closed = asyncio.ensure_future(server.wait_closed())
            await server.shutdown()
        finally:
            with self._lock:
                actions.close()
                self._actions = None
                self._pending_stop = None
            for sock in self._sockets:
                sock.close()


_CONNECTION_OPTIONS = (
    "max_size",
    "max_queue",
    "read_limit",
    "write_limit",
    "ping_interval",
    "ping_timeout",
    "close_timeout",
)


@overload
def run(
    target: Coroutine[Any, Any, T], *, debug: bool | None = None, tune_allocator: bool = True
) -> T: ...


@overload
def run(
    target: Any,
    host: str | None = None,
    port: int | None = None,
    *,
    tune_allocator: bool = True,
    **options: Any,
) -> None: ...


def run(
    target: Any,
    host: str | None = None,
    port: int | None = None,
    *,
    debug: bool | None = None,
    tune_allocator: bool = True,
    **options: Any,
) -> Any:
    """Run a coroutine, or serve a handler or :class:`App`, in this process.

    - ``portside.run(main())`` runs the coroutine ``main()`` like
      :func:`asyncio.run`, on uvloop when it is installed (not with
      ``PORTSIDE_NO_UVLOOP=1``), and returns its result.
    - ``portside.run(handler_or_app, host, port, **options)`` serves until
      SIGTERM or Ctrl-C, drains, and returns: see :class:`Runner` for the
      options.

    Both first call :func:`portside.tune_allocator` unless ``tune_allocator=False``.
    """
    if inspect.iscoroutine(target):
        if host is not None or port is not None or options:
            target.close()
            raise TypeError("portside.run(coroutine) takes no address or server options")
        return runner.run(target, debug=debug, tune_allocator=tune_allocator)
    Runner(target, host, port, tune_allocator=tune_allocator, **options).run()
    return None
