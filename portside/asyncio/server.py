"""WebSocket servers on asyncio: :func:`serve`, :func:`unix_serve`, :class:`Server`."""

from __future__ import annotations

import asyncio
import http
import inspect
import math
import socket
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from types import TracebackType
from typing import Any, Union, cast

from ..exceptions import ConnectionClosed, InvalidMessage, ProtocolError
from ..http11 import SERVER
from ..protocol.close import Close
from ..protocol.deflate import Deflate
from ..protocol.headers import Headers, HeadersLike
from ..protocol.http11 import Request, Response
from ..protocol.options import (
    ConnectionOptions,
    LoggerLike,
    check_callable,
    check_open_timeout,
    compression_option,
    logger_option,
    origins_option,
)
from ..protocol.server import HOOK_FAILED, SHUTTING_DOWN, Origin, ServerProtocol
from .auth import basic_auth
from .broadcasting import broadcast
from .connection import Connection, arena_for

__all__ = [
    "serve",
    "unix_serve",
    "Server",
    "ServerConnection",
    "Serve",
    "broadcast",
    "basic_auth",
    "normalize_process_request",
]

Handler = Callable[..., Awaitable[Any]]
LegacyResponse = tuple[Union[http.HTTPStatus, int], HeadersLike, Union[bytes, str]]
ProcessRequest = Callable[[Any, Any], Union[Response, LegacyResponse, Awaitable[Any], None]]
ProcessResponse = Callable[
    ["ServerConnection", Request, Response],
    Union[Response, Awaitable[Union[Response, None]], None],
]

SERVER_HEADER = SERVER

RETRY_AFTER = 5
"""Seconds in the ``Retry-After`` header of the 503 sent past ``max_connections``."""

ConnectionEnded = Callable[["ServerConnection"], None]


def _positional_params(func: Callable[..., Any]) -> list[inspect.Parameter] | None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in signature.parameters.values() if p.kind in kinds]


def handler_takes_path(handler: Handler) -> bool:
    """Tell whether ``handler`` is the older ``handler(ws, path)`` form."""
    params = _positional_params(handler)
    if params is None:
        return False
    required = [p for p in params if p.default is inspect.Parameter.empty]
    return len(required) >= 2


def process_request_is_legacy(process_request: ProcessRequest) -> bool:
    """Tell whether ``process_request`` is the ``(path, request_headers)`` form.

    It is when its first parameter is annotated ``str`` or named like ``path``,
    or its second is named like ``headers``; otherwise portside calls it as
    ``process_request(connection, request)``.
    """
    params = _positional_params(process_request)
    if params is None or len(params) < 2:
        return False
    first, second = params[0], params[1]
    if first.annotation in (str, "str"):
        return True
    return "path" in first.name.lower() or "header" in second.name.lower()


def normalize_process_request(
    process_request: ProcessRequest,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Turn ``process_request``, of either form, into ``async (connection, request)``.

    The result returns ``None`` or a :class:`Response`, whatever the original
    returns (a tuple for the older form), so that another ``process_request``
    can call it first and answer only when it returned ``None``.
    """
    legacy = process_request_is_legacy(process_request)

    async def normalized(connection: ServerConnection, request: Request) -> Response | None:
        if legacy:
            result = process_request(request.path, request.headers)
        else:
            result = process_request(connection, request)
        if inspect.isawaitable(result):
            result = await result
        return _process_request_result(result)

    return normalized


def _process_request_result(result: Any) -> Response | None:
    if result is None or isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        return _legacy_response(result)
    raise TypeError(
        f"process_request returned {type(result).__name__}; "
        "expected None, a Response or (status, headers, body)"
    )


class ServerConnection(Connection):
    """The server side of a WebSocket connection: what a handler receives."""

    protocol: ServerProtocol
    username: str | None = None
    """The user name that :func:`basic_auth` authenticated; ``None`` without it."""

    def __init__(
        self, server: Server, protocol: ServerProtocol, options: ConnectionOptions
    ) -> None:
        super().__init__(
            protocol,
            max_queue=options.max_queue,
            write_limit=options.write_limit,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            logger=server.logger,
        )
        self.server = server
        self._handshaking = True
        # The handler's task while it runs; _started once there was one.
        self._task: asyncio.Task[None] | None = None
        self._started = False
        # Drain, capacity and end-of-connection hooks (see Server.close()).
        self.accepted_at = self.loop.time()
        """``loop.time()`` when the TCP connection was accepted."""
        self._counted = False  # counted against max_connections
        self.handler_error: str | None = None
        """The class name of the exception the handler raised, if it did."""

    def respond(self, status: http.HTTPStatus | int, text: str) -> Response:
        """Build a plain-text HTTP response, for ``process_request`` to return.

        Args:
            status: The HTTP status.
            text: The body.
        """
        return self.protocol.reject(status, text)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(self.write_limit, self.write_limit // 4)
        self._hook_transport()
        self.server._connection_made(self)

    def _open_timed_out(self) -> None:
        if self._handshaking:
            response = self.response
            if response is None:
                self.logger.info("%s: opening handshake timed out", self._peer_name())
            else:
                # Answered with an error, which the peer does not read: the
                # transport would keep the rest of the response forever.
                self.logger.info(
                    "%s: HTTP %d response not read within open_timeout",
                    self._peer_name(),
                    response.status_code,
                )
            self._abort()

    def _receive_handshake(self, nbytes: int) -> None:
        protocol = self.protocol
        data = protocol.read_bytes(nbytes)
        try:
            request = protocol.receive_request(data)
        except InvalidMessage as exc:
            self.logger.info("%s: invalid HTTP request: %s", self._peer_name(), exc)
            self._send_response(protocol.reject(exc.status, f"Invalid HTTP request: {exc}.\n"))
            return
        if request is None:
            return
        self.request = request
        server = self.server
        if server.process_request is None and server.process_response is None:
            # Nothing to wait for: answer now, and keep reading.
            response = self._default_response(request)
            self._send_response(response)
            if response.status_code == 101 and not self._lost:
                self._opened()
                self._start_task(handshake=False)
            return
        # Nothing more is read until the handshake is answered.
        self.transport.pause_reading()
        self._start_task(handshake=True)

    def _start_task(self, *, handshake: bool) -> None:
        # The handler's coroutine is the task itself when nothing else has to
        # run first: a coroutine around it would be resumed with it on every
        # message. What follows the handler is done by _handler_done().
        coro = self._handshake_then_handle() if handshake else self._call_handler()
        task = self.loop.create_task(coro)
        task.add_done_callback(self._handler_done)
        self._task = task
        self._started = True

    def _call_handler(self) -> Coroutine[Any, Any, Any]:
        """The handler's coroutine for this connection, or one that raises its error."""
        server = self.server
        try:
            if server.handler_takes_path:
                result = server.handler(self, self.path)
            else:
                result = server.handler(self)
        except Exception as exc:
            return _raise(exc)
        if inspect.iscoroutine(result):
            return result
        return _await(result)

    def _opened(self) -> None:
        """The 101 response is sent: the connection is open."""
        self._handshaking = False
        self.server._handshake_done(self)
        self._start_keepalive()
        rest = self.protocol.rest
        if rest:
            self.protocol.rest = b""
            self._feed(rest)
        server = self.server
        if server.closing and server._finish_handshakes:
            # Accepted before the server closed: it opens, and closes as the others.
            self._start_close(server._close_code, server._close_reason)

    def _send_response(self, response: Response) -> None:
        self.response = response
        data = self.protocol.send_response(response)
        if not self._lost:
            self.transport.write(data)
            if response.status_code != 101:
                self.transport.close()

    async def _handshake_then_handle(self) -> None:
        """``process_request`` or ``process_response`` first, then the handler."""
        if not await self._handshake():
            return
        # Resume first: feeding the bytes that came with the request may fill
        # the queue and pause reading again.
        self.transport.resume_reading()
        self._opened()
        await self._call_handler()

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        """The handler returned or raised: close the connection with the code that says how."""
        server = self.server
        # Let go of the task: it holds the handler's exception, whose frames
        # refer to this connection.
        self._task = None
        if task.cancelled():
            self._abort()
        else:
            exc = task.exception()
            if exc is None:
                if not self._handshaking:
                    # RFC 6455 7.4.1: 1000 when done, 1001 when the server goes
                    # away (or the code given to Server.close(), e.g. 1012).
                    if server.closing:
                        self._start_close(server._close_code, server._close_reason)
                    else:
                        self._start_close(1000, "")
            elif not isinstance(exc, ConnectionClosed):
                self.handler_error = type(exc).__name__
                self.logger.error("connection handler failed", exc_info=exc)
                # RFC 6455 7.4.1: 1011, the server met an unexpected condition.
                self._start_close(1011, "")
        if self._lost:
            server._connection_done(self)
        # Otherwise connection_lost() reports it once the closing handshake is over.

    async def _ended(self) -> None:
        """Wait until the handler has returned and the closing handshake is over."""
        task = self._task
        if task is not None:
            await asyncio.wait((task,))
        if not self._handshaking:
            # Not when the handshake failed: the response may never be read.
            await self.wait_closed()

    def _cancel(self) -> None:
        """Part of :meth:`Server.close` past ``close_timeout``: cancel the handler, abort."""
        if self._task is not None:
            self._task.cancel()  # does nothing if the handler has returned
        self._abort()

    async def _handshake(self) -> bool:
        server = self.server
        request = self.request
        assert request is not None
        protocol = self.protocol
        response: Response | None = None
        if server.process_request is not None:
            try:
                response = await server.call_process_request(self, request)
            except Exception:
                self.logger.error("process_request failed", exc_info=True)
                response = protocol.reject(500, HOOK_FAILED)
            if self._lost:
                return False
        if response is None:
            response = self._default_response(request)
        if server.process_response is not None:
            try:
                result = server.process_response(self, request, response)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                self.logger.error("process_response failed", exc_info=True)
                result = protocol.reject(500, HOOK_FAILED)
            if self._lost:
                return False
            if result is not None:
                response = result
        self._send_response(response)
        return response.status_code == 101 and not self._lost

    def _default_response(self, request: Request) -> Response:
        """Accept ``request``, or reject it: invalid, or the server is closing."""
        protocol = self.protocol
        server = self.server
        if server.closing and not server._finish_handshakes:
            return protocol.reject(503, SHUTTING_DOWN)
        if server.max_connections is not None and server._counted >= server.max_connections:
            # Full: refuse the newcomer, leave the open connections alone.
            response = protocol.reject(503, "Too many connections.\n")
            response.headers["Retry-After"] = str(RETRY_AFTER)
            return response
        response = protocol.accept(request)
        if response.status_code == 101:
            self._counted = True
            server._counted += 1
        if protocol.handshake_exc is not None:
            self.logger.info(
                "%s: opening handshake failed: %s", self._peer_name(), protocol.handshake_exc
            )
        return response

    def connection_lost(self, exc: BaseException | None) -> None:  # noqa: D102
        super().connection_lost(exc)
        self.server._handshake_done(self)
        if self._task is None:
            # No handler will report this connection done: it has returned,
            # the request never arrived in full, or it was answered without one.
            self.server._connection_done(self)

    def _shutdown(self) -> None:
        """Part of :meth:`Server.close`: 503 to handshakes, Close (1001) to connections."""
        if self._lost:
            return
        if self._handshaking:
            if self.server._finish_handshakes:
                return  # it completes, then _opened() closes it
            if self._task is None and self.response is None:
                # The request is not complete: answer now.
                self._send_response(self.protocol.reject(503, SHUTTING_DOWN))
            # Otherwise _handshake answers 503 once process_request returns.
        else:
            self._start_close(self.server._close_code, self.server._close_reason)


async def _raise(exc: Exception) -> None:
    """Raise ``exc`` from a task: the handler failed before it returned a coroutine."""
    raise exc


async def _await(result: Any) -> None:
    """Await what a handler that is not a coroutine function returned."""
    await result


def _legacy_response(result: tuple[Any, ...]) -> Response:
    """Convert a ``(status, headers, body)`` tuple into a :class:`Response`."""
    try:
        status, headers, body = result
    except ValueError:
        raise TypeError(
            "process_request must return None, a Response or (status, headers, body)"
        ) from None
    status = http.HTTPStatus(status)
    if isinstance(body, str):
        body = body.encode()
    response_headers = Headers(headers)
    if "Content-Length" not in response_headers:
        response_headers["Content-Length"] = str(len(body))
    if "Connection" not in response_headers:
        response_headers["Connection"] = "close"
    return Response(status.value, status.phrase, response_headers, bytes(body))


class Server:
    """A WebSocket server: what :func:`serve` returns.

    Attributes:
        connections: The connections being served, including those still in the
            opening handshake.
        server: The underlying :class:`asyncio.Server`.
        logger: The logger of the server and its connections.
        closing: Whether :meth:`close` was called: true before the server stops
            accepting, so a readiness check can read it.
        max_connections: The ``max_connections`` option.
        on_connection_end: The ``on_connection_end`` option.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest | None,
        process_response: ProcessResponse | None,
        open_timeout: float | None,
        close_timeout: float | None,
        logger: LoggerLike,
        max_connections: int | None = None,
        on_connection_end: ConnectionEnded | None = None,
    ) -> None:
        self.handler = handler
        self.handler_takes_path = handler_takes_path(handler)
        self.process_request = process_request
        self.process_request_is_legacy = process_request is not None and process_request_is_legacy(
            process_request
        )
        self.process_response = process_response
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.logger = logger
        self.connections: set[ServerConnection] = set()
        self.server: asyncio.Server = cast(asyncio.Server, None)
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._closed = self.loop.create_future()
        # open_timeout: deadlines of the connections still in their opening
        # handshake, checked by one timer every quarter of the timeout rather
        # than by a timer per connection (each costs a heap push and a cancel).
        self._opening: dict[ServerConnection, float] = {}
        self._open_sweep: asyncio.TimerHandle | None = None
        self.max_connections = max_connections
        self.on_connection_end = on_connection_end
        # Connections accepted (101) and not yet done: what max_connections limits.
        self._counted = 0
        # What close() was told: the Close frame of the drain, and when to give up.
        self._close_code = 1001
        self._close_reason = ""
        self._deadline: float | None = None
        self._hurry: asyncio.Future[None] | None = None
        self._finish_handshakes = False
        self._handshakes_over: asyncio.Future[None] | None = None
        self._in_handshake: set[ServerConnection] = set()

    async def call_process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Call ``process_request`` in the form it was written for."""
        assert self.process_request is not None
        if self.process_request_is_legacy:
            result = self.process_request(request.path, request.headers)
        else:
            result = self.process_request(connection, request)
        if inspect.isawaitable(result):
            result = await result
        return _process_request_result(result)

    # Connection tracking.

    def _connection_made(self, connection: ServerConnection) -> None:
        self.connections.add(connection)
        self._in_handshake.add(connection)
        if self.open_timeout is not None:
            self._opening[connection] = self.loop.time() + self.open_timeout
            if self._open_sweep is None:
                self._open_sweep = self.loop.call_later(self.open_timeout / 4, self._sweep)
        if self.closing:
            connection._shutdown()

    def _handshake_done(self, connection: ServerConnection) -> None:
        self._opening.pop(connection, None)
        self._in_handshake.discard(connection)
        over = self._handshakes_over
        if over is not None and not self._in_handshake and not over.done():
            over.set_result(None)  # what close(finish_handshakes=True) waits for

    def _sweep(self) -> None:
        """Abort the handshakes that outlived open_timeout; a quarter of it late at most."""
        assert self.open_timeout is not None
        now = self.loop.time()
        expired = [c for c, deadline in self._opening.items() if deadline <= now]
        for connection in expired:
            del self._opening[connection]
            connection._open_timed_out()
        self._open_sweep = None
        if self._opening:
            self._open_sweep = self.loop.call_later(self.open_timeout / 4, self._sweep)

    def _connection_done(self, connection: ServerConnection) -> None:
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        if connection._counted:
            connection._counted = False
            self._counted -= 1
        if self.on_connection_end is not None:
            try:
                self.on_connection_end(connection)
            except Exception:
                self.logger.error("on_connection_end failed", exc_info=True)

    @property
    def open_connections(self) -> int:
        """How many connections were accepted (101) and are not done yet."""
        return self._counted

    # Lifecycle.

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self.server.sockets)

    def is_serving(self) -> bool:
        """Whether the server accepts connections."""
        return self.server.is_serving()

    async def start_serving(self) -> None:
        """Start accepting connections (when created with ``start_serving=False``)."""
        await self.server.start_serving()

    async def serve_forever(self) -> None:
        """Accept connections until :meth:`close` is called or the task is cancelled."""
        try:
            await self.server.serve_forever()
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    def close(
        self,
        close_connections: bool = True,
        *,
        code: int = 1001,
        reason: str = "",
        spread: float = 0.0,
        graceful_timeout: float | None = None,
        finish_handshakes: bool = False,
    ) -> None:
        """Shut the server down; return at once. :meth:`wait_closed` waits.

        Stops accepting connections; answers handshakes in progress with 503;
        sends Close frames with ``code`` (1001, going away) to open connections,
        so handlers blocked in ``recv()`` get :class:`ConnectionClosedOK`; cancels
        the handlers still running ``graceful_timeout`` seconds later.

        :attr:`closing` is true from the first call on, before anything else
        happens: a readiness check that reads it fails before the server stops
        accepting.

        Safe to call more than once, from a signal handler (installed with
        ``loop.add_signal_handler`` or ``signal.signal``) and from another thread:
        it only records the request and wakes the event loop, which does the rest.
        A later call can only bring the deadline nearer: ``close(graceful_timeout=0)``
        after a graceful ``close()`` cancels the remaining handlers at once.

        Args:
            close_connections: ``False`` only stops accepting connections and
                lets the open ones run to their end.
            code: The close code sent to open connections: 1001 (going away) by
                default; 1012 (service restart) tells clients to reconnect.
            reason: The close reason sent with it.
            spread: Seconds over which the Close frames are spread, evenly,
                instead of all going out at once, so that clients do not all
                reconnect elsewhere in the same instant.
            graceful_timeout: Seconds from this call until the handlers still
                running are cancelled (and their connections aborted). ``None``:
                ``close_timeout``, as before this option existed; ``math.inf``:
                never. Must be longer than ``spread``, or the last Close frames
                are sent by the cancellation itself.
            finish_handshakes: Let the opening handshakes in progress complete,
                then close those connections with ``code`` too, instead of
                answering them with 503: every client the server accepted sees
                a WebSocket Close, none a failed handshake (what a rolling
                restart wants; they are done by ``graceful_timeout`` at the
                latest, ``open_timeout`` for each).

        Raises:
            ValueError: If ``code`` may not be sent in a Close frame, ``reason``
                is too long, or ``spread`` or ``graceful_timeout`` is negative.
        """
        try:
            Close(code, reason).serialize()
        except ProtocolError as exc:
            raise ValueError(f"cannot close connections with {code} {reason!r}: {exc}") from None
        if not spread >= 0:
            raise ValueError(f"spread must be >= 0 seconds, not {spread!r}")
        if graceful_timeout is None:
            graceful_timeout = math.inf if self.close_timeout is None else self.close_timeout
        if not graceful_timeout >= 0:
            raise ValueError(f"graceful_timeout must be >= 0 seconds, not {graceful_timeout!r}")
        if self.closing:
            # Only a nearer deadline changes anything now.
            self.loop.call_soon_threadsafe(self._hurry_up, graceful_timeout)
            return
        # From now on, handshakes that complete get 503 (or a Close frame).
        self.closing = True
        self._close_code = code
        self._close_reason = reason
        self._finish_handshakes = finish_handshakes
        self.loop.call_soon_threadsafe(
            self._start_closing, close_connections, spread, graceful_timeout
        )

    def _start_closing(
        self, close_connections: bool, spread: float, graceful_timeout: float
    ) -> None:
        self._deadline = self.loop.time() + graceful_timeout
        self._close_task = self.loop.create_task(self._close(close_connections, spread))

    def _hurry_up(self, graceful_timeout: float) -> None:
        deadline = self.loop.time() + graceful_timeout
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
            if self._hurry is not None and not self._hurry.done():
                self._hurry.set_result(None)

    async def _close(self, close_connections: bool, spread: float) -> None:
        await self._stop_accepting()
        spreading: asyncio.Task[None] | None = None
        if close_connections:
            opened = []
            for connection in list(self.connections):
                if connection._handshaking:
                    connection._shutdown()
                else:
                    opened.append(connection)
            if spread > 0 and len(opened) > 1:
                spreading = self.loop.create_task(self._spread_closes(opened, spread))
            else:
                for connection in opened:
                    connection._shutdown()
        if close_connections and self._finish_handshakes and self._in_handshake:
            # Connections open as their handshakes complete, and _opened()
            # closes them at once; then they end like the others.
            self._handshakes_over = self.loop.create_future()
            await self._until_deadline({self._handshakes_over})
            self._handshakes_over = None
        # A connection with a handler ends when the handler has returned and
        # the closing handshake is over.
        ends = {
            self.loop.create_task(connection._ended()): connection
            for connection in self.connections
            if connection._started
        }
        pending: set[asyncio.Future[Any]] = set(ends)
        if close_connections:
            pending = await self._until_deadline(pending)
        if spreading is not None:
            spreading.cancel()
        if close_connections:
            for end in pending:
                ends[cast("asyncio.Task[None]", end)]._cancel()
        if ends:
            await asyncio.wait(ends)
        for connection in list(self.connections):
            connection._abort()
        await self.server.wait_closed()
        if self._open_sweep is not None:
            self._open_sweep.cancel()
            self._open_sweep = None
        self._opening.clear()
        self._closed.set_result(None)

    async def _stop_accepting(self) -> None:
        """Stop accepting connections, and serve those accepted so far.

        asyncio's selector loop accepts a connection in one turn and attaches
        it to the server in a task one turn later: ``asyncio.Server.close()``
        in between leaves it accepted and never served, its client waiting
        forever (CPython gh-109564; gh-155934 closes it instead, on recent
        releases). So the listening sockets stop being read first, and the
        accepts under way complete (one turn: removing a reader cancels its
        callback if it is due in this turn), before they close.
        """
        loop = self.loop
        if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            for sock in self.server.sockets:
                loop.remove_reader(sock.fileno())
            await asyncio.sleep(0)
        self.server.close()

    async def _until_deadline(self, pending: set[asyncio.Future[Any]]) -> set[asyncio.Future[Any]]:
        """Wait for ``pending`` until the deadline of close() (which may move); the rest."""
        while pending:
            assert self._deadline is not None
            timeout = self._deadline - self.loop.time()
            if timeout <= 0:
                break
            self._hurry = hurry = self.loop.create_future()
            _, pending = await asyncio.wait(
                {*pending, hurry},
                timeout=None if math.isinf(timeout) else timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending.discard(hurry)
            if not hurry.done():
                hurry.cancel()
        self._hurry = None
        return pending

    async def _spread_closes(self, connections: list[ServerConnection], spread: float) -> None:
        """Send the Close frames of a drain evenly over ``spread`` seconds."""
        loop = self.loop
        start = loop.time()
        count = len(connections)
        # Batches every 10 ms at most, rather than a timer per connection.
        tick = max(spread / count, 0.01)
        sent = 0
        while sent < count:
            due = min(count, int(count * (loop.time() - start) / spread) + 1)
            for connection in connections[sent:due]:
                connection._shutdown()
            sent = max(sent, due)
            if sent < count:
                await asyncio.sleep(tick)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every handler has finished."""
        await asyncio.shield(self._closed)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class Serve:
    """What :func:`serve` returns: await it, or use it with ``async with``."""

    def __init__(self, create: Callable[[], Awaitable[Server]]) -> None:
        self._create = create
        self._server: Server | None = None

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def _start(self) -> Server:
        self._server = await self._create()
        return self._server

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def _server_factory(
    handler: Handler,
    *,
    process_request: ProcessRequest | None,
    process_response: ProcessResponse | None,
    subprotocols: Sequence[str] | None,
    select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None] | None,
    origins: Sequence[Origin] | None,
    compression: str | Deflate | None,
    server_header: str | None,
    open_timeout: float | None,
    logger: LoggerLike | str | None,
    options: ConnectionOptions,
    max_connections: int | None = None,
    on_connection_end: ConnectionEnded | None = None,
) -> Callable[[], Awaitable[tuple[Server, Callable[[], ServerConnection]]]]:
    """Validate the options once; return how to build the server in the loop."""
    check_callable("handler", handler, "a coroutine function taking the connection", optional=False)
    check_callable("process_request", process_request)
    check_callable("process_response", process_response)
    check_open_timeout(open_timeout)
    if max_connections is not None and (
        isinstance(max_connections, bool)
        or not isinstance(max_connections, int)
        or max_connections < 1
    ):
        raise ValueError(f"max_connections must be an int >= 1 or None, not {max_connections!r}")
    check_callable("on_connection_end", on_connection_end)
    deflate = compression_option(compression)
    origins = origins_option(origins)
    the_logger = logger_option(logger, "portside.server")

    async def build() -> tuple[Server, Callable[[], ServerConnection]]:
        server = Server(
            handler,
            process_request=process_request,
            process_response=process_response,
            open_timeout=open_timeout,
            close_timeout=options.close_timeout,
            logger=the_logger,
            max_connections=max_connections,
            on_connection_end=on_connection_end,
        )
        arena = arena_for(server.loop)
        selector = None

        def factory() -> ServerConnection:
            protocol = ServerProtocol(
                origins=origins,
                subprotocols=subprotocols,
                select_subprotocol=selector,
                compression=deflate,
                server_header=server_header,
                max_size=options.max_size,
                read_limit=options.read_limit,
                arena=arena,
            )
            connection = ServerConnection(server, protocol, options)
            if select_subprotocol is not None:
                protocol.select_subprotocol = lambda offered: select_subprotocol(
                    connection, offered
                )
            return connection

        return server, factory

    return build


Listen = Callable[
    [asyncio.AbstractEventLoop, Callable[[], ServerConnection]], Awaitable[asyncio.Server]
]


def _serve(
    handler: Handler,
    listen: Listen,
    *,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None] | None = None,
    origins: Sequence[Origin] | None = None,
    compression: str | Deflate | None = "deflate",
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    read_limit: int = 2**16,
    write_limit: int = 2**16,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    server_header: str | None = SERVER_HEADER,
    logger: LoggerLike | str | None = None,
    max_connections: int | None = None,
    on_connection_end: ConnectionEnded | None = None,
) -> Serve:
    options = ConnectionOptions.validate(
        max_size=max_size,
        max_queue=max_queue,
        read_limit=read_limit,
        write_limit=write_limit,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
    )
    build = _server_factory(
        handler,
        process_request=process_request,
        process_response=process_response,
        subprotocols=subprotocols,
        select_subprotocol=select_subprotocol,
        origins=origins,
        compression=compression,
        server_header=server_header,
        open_timeout=open_timeout,
        logger=logger,
        options=options,
        max_connections=max_connections,
        on_connection_end=on_connection_end,
    )

    async def create() -> Server:
        server, factory = await build()
        server.server = await listen(server.loop, factory)
        return server

    return Serve(create)


def serve(
    handler: Handler,
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    ssl: Any = None,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    **kwargs: Any,
) -> Serve:
    """Start a WebSocket server on TCP.

    ``await serve(...)`` returns a :class:`Server`; ``async with serve(...) as
    server:`` closes it on exit. ``docs/reference.md`` documents every option.

    Args:
        handler: ``async def handler(ws)``, or the older ``handler(ws, path)``.
        host: The interface(s) to listen on; ``None`` for all.
        port: The TCP port.
        ssl: An :class:`ssl.SSLContext` to serve ``wss://``.
        sock: A listening socket to use instead of ``host`` and ``port``.
        reuse_port: Set ``SO_REUSEPORT`` so that several processes share the port.
        process_request: Answers HTTP requests before the WebSocket handshake,
            e.g. health checks: ``(connection, request)`` returning a
            :class:`~portside.Response` or ``None``, or the older ``(path,
            request_headers)`` returning ``(status, headers, body)`` or ``None``.
        process_response: ``(connection, request, response)``: may modify or
            replace the handshake response.
        subprotocols: Supported subprotocols, in order of preference.
        select_subprotocol: ``(connection, offered) -> str | None``, overriding
            the choice among ``subprotocols``.
        origins: Allowed ``Origin`` values (strings, compiled patterns, or
            ``None`` for requests without one); ``None`` allows any.
        compression: ``"deflate"`` (permessage-deflate with the defaults of
            :class:`~portside.Deflate`), a :class:`~portside.Deflate`, or ``None``.
        max_size: The largest message accepted, in bytes; ``None`` for no limit.
        max_queue: Messages buffered before reading stops; ``None``: no limit.
        read_limit: The most bytes read from the socket in one go, besides room
            for a frame header.
        write_limit: Bytes buffered for sending above which ``send()`` waits.
        open_timeout: Seconds allowed for the opening handshake, checked every
            quarter of it (so up to 1.25 times as long), including the time an
            HTTP error response takes to be read; ``None``: forever.
        ping_interval: Seconds between keepalive pings; ``None`` disables them.
        ping_timeout: Seconds to wait for a keepalive pong; ``None``: forever.
        close_timeout: Seconds to wait for the closing handshake, and for
            handlers to finish when the server closes.
        server_header: The ``Server`` response header; ``None`` omits it.
        logger: A logger or a logger name; default ``portside.server``.
        max_connections: The most connections open at once; past it, handshakes
            get ``503 Service Unavailable`` with ``Retry-After`` and the open
            connections are not touched. HTTP requests that ``process_request``
            answers (health checks) are served regardless. ``None``: no limit.
        on_connection_end: ``(connection) -> None``, called once per connection
            when it is done: the handler returned and TCP closed, or the
            handshake failed. For access logs and metrics: ``connection``
            still has its ``request``, ``response``, ``accepted_at``, close codes.
        **kwargs: Other keyword arguments go to
            :meth:`asyncio.loop.create_server` (``backlog``, ``start_serving``...).
    """
    create_kwargs = {key: kwargs.pop(key) for key in _CREATE_SERVER_KWARGS if key in kwargs}
    _tls_handshake_timeout(ssl, kwargs, create_kwargs)
    if reuse_port:
        create_kwargs["reuse_port"] = True
    if sock is not None and (host is not None or port is not None):
        raise ValueError("pass either sock, or host and port, not both")

    def listen(
        loop: asyncio.AbstractEventLoop, factory: Callable[[], ServerConnection]
    ) -> Awaitable[asyncio.Server]:
        if sock is not None:
            return loop.create_server(factory, sock=sock, ssl=ssl, **create_kwargs)
        return loop.create_server(factory, host, port, ssl=ssl, **create_kwargs)

    return _serve(handler, listen, **kwargs)


def unix_serve(
    handler: Handler,
    path: str | None = None,
    *,
    ssl: Any = None,
    sock: socket.socket | None = None,
    **kwargs: Any,
) -> Serve:
    """Start a WebSocket server on a Unix socket.

    Takes the options of :func:`serve` but ``host``, ``port`` and ``reuse_port``.

    Args:
        handler: As for :func:`serve`.
        path: The file system path of the socket.
        ssl: An :class:`ssl.SSLContext`, rarely useful on a Unix socket.
        sock: A listening Unix socket to use instead of ``path``.
        **kwargs: The options of :func:`serve`.
    """
    create_kwargs = {key: kwargs.pop(key) for key in _CREATE_SERVER_KWARGS if key in kwargs}
    _tls_handshake_timeout(ssl, kwargs, create_kwargs)

    def listen(
        loop: asyncio.AbstractEventLoop, factory: Callable[[], ServerConnection]
    ) -> Awaitable[asyncio.Server]:
        return loop.create_unix_server(factory, path, sock=sock, ssl=ssl, **create_kwargs)

    return _serve(handler, listen, **kwargs)


def _tls_handshake_timeout(ssl: Any, kwargs: dict[str, Any], create_kwargs: dict[str, Any]) -> None:
    """Bound the TLS handshake by open_timeout, unless ssl_handshake_timeout is given.

    The event loop runs the TLS handshake before the connection exists for
    portside, so open_timeout alone would not cover a client that never sends
    its ClientHello, or stalls in the middle: the loop's own default is 60 s.
    """
    open_timeout = kwargs.get("open_timeout", 10)
    if ssl is not None and "ssl_handshake_timeout" not in create_kwargs and open_timeout:
        create_kwargs["ssl_handshake_timeout"] = open_timeout


# Keyword arguments that serve() passes on to loop.create_server().
_CREATE_SERVER_KWARGS = (
    "family",
    "flags",
    "backlog",
    "reuse_address",
    "ssl_handshake_timeout",
    "ssl_shutdown_timeout",
    "start_serving",
)
