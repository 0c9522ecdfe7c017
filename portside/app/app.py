"""The :class:`App`: a handler with its ``serve()`` options, hooks and readiness checks.

``portside serve module:app`` and :func:`portside.run` accept either a bare
handler or an :class:`App`. An App is what a service needs beyond the handler:
the options of :func:`portside.serve` it was written for, a ``process_request``,
coroutines to run when a worker starts and stops (open and close a database
pool, a Redis connection), and conditions for ``/readyz``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, Union

from ..asyncio.server import Handler, ProcessRequest

__all__ = ["App", "Hook", "ReadinessCheck", "as_app"]

Hook = Callable[[], Awaitable[None]]
"""A startup or shutdown hook: a coroutine function without arguments."""
ReadinessCheck = Callable[[], Union[bool, Awaitable[bool]]]
"""A readiness condition: a function or coroutine function returning ``True`` when ready."""

H = TypeVar("H", bound=Hook)

# serve() options an App may carry. host, port, sock, ssl and reuse_port belong to
# the command line (or to portside.run()), since the supervisor owns the sockets;
# process_request is an argument of its own, since portside chains it.
SERVE_OPTIONS = frozenset(
    {
        "process_response",
        "subprotocols",
        "select_subprotocol",
        "origins",
        "compression",
        "max_size",
        "max_queue",
        "read_limit",
        "write_limit",
        "open_timeout",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "server_header",
        "logger",
        "max_connections",
    }
)


class App:
    """A WebSocket application: what ``portside serve MODULE:ATTR`` runs.

    Example::

        app = portside.App(handler, max_size=2**16, subprotocols=["chat"])

        @app.on_startup
        async def connect_database() -> None: ...

        @app.on_shutdown
        async def disconnect_database() -> None: ...

        app.add_readiness_check(lambda: database.connected, name="database")

    Options given on the command line (or in the environment, or the config
    file) override those the App carries; the App's override the defaults.

    Args:
        handler: ``async def handler(ws)``, or the older ``handler(ws, path)``.
        process_request: As for :func:`portside.serve`; it runs before portside's
            own endpoints (``/healthz``, ``/readyz``, metrics), which answer only
            when it returned ``None``.
        on_startup: Hooks run in order when a worker starts, before it accepts
            connections. If one raises, the worker fails to start: ``portside
            serve`` stops with the error rather than respawning.
        on_shutdown: Hooks run in reverse order when a worker stops, after its
            connections are closed (or cancelled at ``--graceful-timeout``).
        **serve_options: Options of :func:`portside.serve`: ``max_size``,
            ``subprotocols``, ``origins``, ``compression``... (not ``host``,
            ``port``, ``sock``, ``ssl`` or ``reuse_port``: where to listen is
            the command line's business).

    Raises:
        TypeError: If ``handler`` is not callable or an option is unknown.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest | None = None,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
        **serve_options: Any,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be a coroutine function taking the connection")
        unknown = sorted(set(serve_options) - SERVE_OPTIONS)
        if unknown:
            raise TypeError(
                f"App() got options it cannot carry: {', '.join(unknown)} "
                f"(it takes {', '.join(sorted(SERVE_OPTIONS))})"
            )
        if process_request is not None and not callable(process_request):
            raise TypeError("process_request must be callable or None")
        self.handler = handler
        self.process_request = process_request
        self.serve_options: dict[str, Any] = dict(serve_options)
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.readiness_checks: list[tuple[str, ReadinessCheck]] = []
        for hook in on_startup:
            self.on_startup(hook)
        for hook in on_shutdown:
            self.on_shutdown(hook)

    def on_startup(self, hook: H) -> H:
        """Add a hook run when a worker starts; usable as a decorator.

        Hooks run in the order they were added, once per worker process, in its
        event loop, before it accepts connections.
        """
        self.startup_hooks.append(_check_hook(hook))
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Add a hook run when a worker stops; usable as a decorator.

        Hooks run in reverse order, once per worker process, after its
        connections are closed. An exception is logged and the next hook runs.
        """
        self.shutdown_hooks.append(_check_hook(hook))
        return hook

    def add_readiness_check(self, check: ReadinessCheck, name: str | None = None) -> None:
        """Add a condition that ``/readyz`` requires.

        ``/readyz`` answers ``200`` when the worker accepts connections and every
        check returns ``True``; otherwise ``503`` with the names of the failing
        checks in the body. A check that raises, or takes longer than one
        second, counts as failing. Checks run on each request to ``/readyz``,
        in the worker's event loop: keep them cheap (read a flag that a
        background task maintains, rather than doing I/O).

        Args:
            check: A function or coroutine function without arguments.
            name: Shown in ``/readyz`` answers and logs; default the function's name.
        """
        if not callable(check):
            raise TypeError("a readiness check must be callable")
        self.readiness_checks.append((name or str(getattr(check, "__name__", repr(check))), check))


def _check_hook(hook: Any) -> Hook:
    if not callable(hook):
        raise TypeError(f"a hook must be a coroutine function, not {hook!r}")
    return hook  # type: ignore[no-any-return]


def as_app(target: object) -> App:
    """Return ``target`` if it is an :class:`App`, else an App around the handler ``target``.

    Raises:
        TypeError: If ``target`` is neither an App nor callable.
    """
    if isinstance(target, App):
        return target
    if callable(target):
        return App(target)
    raise TypeError(f"expected a handler or a portside.App, not {type(target).__name__}")


async def call_hook(hook: Hook) -> None:
    """Run a hook, whether it is a coroutine function or returns an awaitable."""
    result = hook()
    if inspect.isawaitable(result):
        await result
