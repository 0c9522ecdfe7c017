"""WebSocket servers on threads: :func:`serve`, :func:`unix_serve`, :class:`Server`.

:func:`serve` binds a listening socket and returns a :class:`Server`;
:meth:`Server.serve_forever` accepts connections and runs each one in a thread
of its own: the TLS and WebSocket opening handshakes, then the handler, then
the closing handshake. :meth:`Server.shutdown`, from any thread, stops it.
"""

from __future__ import annotations

import http
import os
import select
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Union

from ..connection_properties import peer_name
from ..exceptions import ConnectionClosed, InvalidMessage
from ..http11 import SERVER
from ..protocol.deflate import Deflate
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
from ..protocol.state import OPEN
from .auth import basic_auth
from .broadcasting import broadcast
from .connection import Connection, new_connection
from .messages import queue_limits
from .transport import TLSTransport, Transport, remaining
from .waker import Waker

__all__ = ["basic_auth", "broadcast", "serve", "unix_serve", "Server", "ServerConnection"]

Handler = Callable[["ServerConnection"], Any]
ProcessRequest = Callable[["ServerConnection", Request], Union[Response, None]]
ProcessResponse = Callable[["ServerConnection", Request, Response], Union[Response, None]]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], Union[str, None]]

#: The default ``Server`` response header.
SERVER_HEADER = SERVER


class ServerConnection(Connection):
    """The server side of a WebSocket connection: what a handler receives.

    Args:
        transport: The connection's :class:`~portside.sync.transport.Transport`,
            or a connected plain socket.
        protocol: The sans-I/O protocol.
        server: The server this connection belongs to.
        ping_interval: As for :func:`serve`.
        ping_timeout: As for :func:`serve`.
        close_timeout: As for :func:`serve`.
        max_queue: As for :func:`serve`.

    Attributes:
        server: The :class:`Server`.
        username: The user name, once ``basic_auth`` accepted the request.
        handler: The handler ``route()`` chose for the request's path.
        handler_kwargs: The values ``route()`` captured from the path.
    """

    protocol: ServerProtocol

    def __init__(
        self,
        transport: Transport | socket.socket,
        protocol: ServerProtocol,
        server: Server,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: int | tuple[int | None, int | None] | None = 16,
    ) -> None:
        super().__init__(
            transport,
            protocol,
            max_queue=max_queue,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            logger=server.logger,
        )
        self.server = server
        self.username: str
        # What route() chose for this connection: the handler and the URL's values.
        self.handler: Callable[..., Any]
        self.handler_kwargs: dict[str, Any]

    def respond(self, status: http.HTTPStatus | int, text: str) -> Response:
        """Build a plain-text HTTP response, for ``process_request`` to return.

        Args:
            status: The HTTP status.
            text: The body.
        """
        return self.protocol.reject(status, text)

    def _handshake(
        self,
        deadline: float | None,
        process_request: ProcessRequest | None,
        process_response: ProcessResponse | None,
    ) -> bool:
        """Read the request and answer it; return whether the connection is open."""
        protocol = self.protocol
        transport = self.transport
        request = None
        while request is None:
            buffer = protocol.get_buffer()
            try:
                count = transport.recv_into(buffer, remaining(deadline))
            except TimeoutError:
                self.logger.info("%s: opening handshake timed out", self._peer_name())
                return False
            except OSError:
                return False  # the client went away
            if not count:
                if self.server.closing:
                    # Server.shutdown() stopped the read: answer before closing.
                    self._send_response(protocol.reject(503, SHUTTING_DOWN), deadline)
                return False
            try:
                request = protocol.receive_request(protocol.read_bytes(count))
            except InvalidMessage as exc:
                self.logger.info("%s: invalid HTTP request: %s", self._peer_name(), exc)
                response = protocol.reject(exc.status, f"Invalid HTTP request: {exc}.\n")
                self._send_response(response, deadline)
                return False
        self.request = request
        forced = None
        if process_request is not None:
            forced = self._call_hook("process_request", process_request, self, request)
        if forced is None:
            forced = self._call_hook("the opening handshake", self._default_response, request)
        assert forced is not None  # the handshake's own response, or a 500
        response = forced
        if process_response is not None:
            replaced = self._call_hook(
                "process_response", process_response, self, request, response
            )
            if replaced is not None:
                response = replaced
        if response.status_code == 101 and self.server.closing:
            response = protocol.reject(503, SHUTTING_DOWN)
        if not self._send_response(response, deadline):
            return False
        rest = protocol.rest
        if rest:
            protocol.rest = b""
            self._feed(rest)
        return True

    def _call_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> Response | None:
        """Call ``process_request`` or ``process_response``; 500 if it fails."""
        try:
            result = hook(*args)
            if result is not None and not isinstance(result, Response):
                raise TypeError(
                    f"{name} returned {type(result).__name__}; expected None or a Response"
                )
        except Exception:
            # The application's code failed (select_subprotocol, for the handshake).
            self.logger.error("%s failed", name, exc_info=True)
            return self.protocol.reject(500, HOOK_FAILED)
        return result

    def _default_response(self, request: Request) -> Response:
        """Accept ``request``, or reject it: invalid, or the server is closing."""
        protocol = self.protocol
        if self.server.closing:
            return protocol.reject(503, SHUTTING_DOWN)
        response = protocol.accept(request)
        if protocol.handshake_exc is not None:
            self.logger.info(
                "%s: opening handshake failed: %s", self._peer_name(), protocol.handshake_exc
            )
        return response

    def _send_response(self, response: Response, deadline: float | None) -> bool:
        """Write the response; after an error response, close TCP."""
        self.response = response
        with self._lock:
            data = self.transport.encode([self.protocol.send_response(response)])
        try:
            self.transport.send(data, remaining(deadline))
        except TimeoutError:
            if response.status_code == 101:
                self.logger.info("%s: opening handshake timed out", self._peer_name())
            else:
                # Answered with an error, which the peer does not read.
                self.logger.info(
                    "%s: HTTP %d response not read within open_timeout",
                    self._peer_name(),
                    response.status_code,
                )
            return False
        except OSError:
            return False
        return response.status_code == 101


class Server:
    """A WebSocket server: what :func:`serve` returns.

    Use it as a context manager, which shuts it down on exit, and call
    :meth:`serve_forever`::

        with serve(handler, "localhost", 8765) as server:
            server.serve_forever()

    Args:
        socket: The listening socket.
        handler: Called in a new thread with each accepted socket and its address.
        logger: The logger of the server and its connections.

    Attributes:
        socket: The listening socket.
        logger: The logger of the server and its connections.
    """

    def __init__(
        self,
        socket: socket.socket,
        handler: Callable[[socket.socket, Any], None],
        logger: LoggerLike | None = None,
    ) -> None:
        self.socket = socket
        self.handler = handler
        self.logger = logger_option(logger, "portside.server")
        self.closing = False
        self._lock = threading.Lock()
        self._handshaking: set[ServerConnection] = set()
        self._open: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        self._waker = Waker()
        self._serving = False
        self._served = threading.Event()
        self._shutdown_done = threading.Event()
        self._close_code = 1001
        self._close_reason = ""

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections: handshake done, closing handshake not started."""
        with self._lock:
            return {c for c in self._open if c.protocol.state is OPEN}

    def fileno(self) -> int:
        """The listening socket's file descriptor."""
        return self.socket.fileno()

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` is called from another thread."""
        with self._lock:
            if self.closing or self._serving:
                return
            self._serving = True
        try:
            listener = self.socket
            listener.setblocking(False)
            poller = select.poll()
            poller.register(listener, select.POLLIN)
            poller.register(self._waker.fd, select.POLLIN)
            self.logger.info("server listening on %s", _socket_name(listener))
            while not self.closing:
                poller.poll()
                if self.closing:
                    break
                self._waker.drain()
                try:
                    sock, address = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # another process took it, or a wake-up
                except OSError as exc:
                    if self.closing:
                        break
                    # Out of file descriptors, say: wait a little, as asyncio does.
                    self.logger.error("socket.accept() failed: %s; retrying", exc)
                    select.select([self._waker.fd], [], [], 0.1)
                    continue
                thread = threading.Thread(
                    target=self._run_handler, args=(sock, address), name="portside-handler"
                )
                with self._lock:
                    self._threads.add(thread)
                thread.start()
        finally:
            self._served.set()

    def _run_handler(self, sock: socket.socket, address: Any) -> None:
        try:
            self.handler(sock, address)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def shutdown(self, close_connections: bool = True, code: int = 1001, reason: str = "") -> None:
        """Shut the server down: stop accepting, close connections, wait for handlers.

        Callable from any thread. Stops accepting connections; unless
        ``close_connections`` is ``False``, answers opening handshakes in
        progress with HTTP 503 and closes open connections with ``code``
        (1001, going away) so that handlers blocked in ``recv()`` get
        :class:`~portside.ConnectionClosedOK`; then waits until every handler
        returned (but the calling one). Calling it again waits for the first
        call to finish and for every handler, including one that made the
        first call; from a handler, calling it again returns at once.

        Args:
            close_connections: ``False`` only stops accepting connections and
                waits for the open ones to end by themselves.
            code: The close code sent to open connections.
            reason: The close reason sent to open connections.
        """
        with self._lock:
            first = not self.closing
            self.closing = True
            serving = self._serving
            if first:
                self._close_code = code
                self._close_reason = reason
        current = threading.current_thread()
        if not first:
            with self._lock:
                in_a_handler = current in self._threads
            if current is not self._shutdown_thread and not in_a_handler:
                # The first call waits for every handler but the thread that
                # made it, which may be one: wait for that one too.
                self._shutdown_done.wait()
                self._join_handlers(current)
            return
        self._shutdown_thread = current
        self.logger.info("server closing")
        self._waker.wake()
        if serving:
            self._served.wait()
        self.socket.close()
        with self._lock:
            handshaking = list(self._handshaking)
            opened = list(self._open)
        if close_connections:
            for connection in handshaking:
                # The read of the request returns: it is answered with 503.
                connection.transport.shutdown_read()
            for connection in opened:
                connection._start_close(code, reason)
        self._join_handlers(current)
        self._waker.close()
        self.logger.info("server closed")
        self._shutdown_done.set()

    _shutdown_thread: threading.Thread | None = None

    def _join_handlers(self, current: threading.Thread) -> None:
        """Wait until every handler thread but ``current`` returned."""
        while True:
            with self._lock:
                threads = [thread for thread in self._threads if thread is not current]
            if not threads:
                break
            for thread in threads:
                thread.join()

    # Connection tracking, called by the connections' threads.

    def _handshake_started(self, connection: ServerConnection) -> None:
        with self._lock:
            self._handshaking.add(connection)
            closing = self.closing
        if closing:
            connection.transport.shutdown_read()

    def _handshake_ended(self, connection: ServerConnection, opened: bool) -> None:
        with self._lock:
            self._handshaking.discard(connection)
            if opened:
                self._open.add(connection)
            closing = self.closing
        if opened and closing:
            connection._start_close(self._close_code, self._close_reason)

    def _connection_ended(self, connection: ServerConnection) -> None:
        with self._lock:
            self._open.discard(connection)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def _socket_name(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:  # pragma: no cover - closed already
        return "?"
    if isinstance(name, tuple):
        host = f"[{name[0]}]" if ":" in name[0] else name[0]
        return f"{host}:{name[1]}"
    return str(name)


def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    origins: Sequence[Origin] | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    compression: str | Deflate | None = "deflate",
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    server_header: str | None = SERVER_HEADER,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | tuple[int | None, int | None] | None = 16,
    read_limit: int = 2**16,
    write_limit: int = 2**16,
    logger: LoggerLike | str | None = None,
    create_connection: type[ServerConnection] | None = None,
    **kwargs: Any,
) -> Server:
    """Create a WebSocket server listening on ``host`` and ``port``.

    The socket is bound and listening when :func:`serve` returns; connections
    are accepted once :meth:`Server.serve_forever` runs. Each connection gets a
    thread that performs the opening handshake and calls ``handler`` with the
    :class:`ServerConnection`; when the handler returns the connection closes
    with 1000 (1001 during shutdown), and when it raises, the error is logged
    and the connection closes with 1011. ``docs/reference.md`` documents every
    option.

    Args:
        handler: ``handler(connection)``, called in the connection's thread.
        host: The interface to listen on; ``None``: all IPv4 interfaces.
        port: The TCP port; 0 picks a free one.
        sock: A listening socket to use instead of ``host`` and ``port``.
        ssl: An :class:`ssl.SSLContext` to serve ``wss://``.
        origins: Allowed ``Origin`` values; ``None`` allows any.
        subprotocols: Supported subprotocols, in order of preference.
        select_subprotocol: ``(connection, offered) -> str | None``.
        compression: ``"deflate"``, a :class:`~portside.Deflate`, or ``None``.
        process_request: ``(connection, request) -> Response | None``, called
            before the handshake; a response is sent instead of the handshake's.
        process_response: ``(connection, request, response) -> Response | None``.
        server_header: The ``Server`` response header; ``None`` omits it.
        open_timeout: Seconds allowed for the TLS and opening handshakes.
        ping_interval: Seconds between keepalive pings; ``None`` disables them.
        ping_timeout: Seconds to wait for a keepalive pong; ``None``: forever.
        close_timeout: Seconds to wait for the closing handshake.
        max_size: The largest message accepted, in bytes; ``None``: no limit.
        max_queue: Messages buffered before reading stops, or ``(high, low)``;
            ``None``: no limit.
        read_limit: The most bytes read from the socket in one go.
        write_limit: Control frames buffered while the socket is full before
            reading stops, in bytes.
        logger: A logger or logger name; default ``portside.server``.
        create_connection: A :class:`ServerConnection` subclass to use.
        **kwargs: Passed to :func:`socket.create_server` (``family``,
            ``backlog``, ``reuse_port``, ``dualstack_ipv6``).
    """
    unix_path = kwargs.pop("_unix_path", None)
    unix = kwargs.pop("_unix", False)
    check_callable("handler", handler, "a function taking the connection", optional=False)
    check_callable("process_request", process_request)
    check_callable("process_response", process_response)
    check_open_timeout(open_timeout)
    queue_limits(max_queue)
    options = ConnectionOptions.validate(
        max_size=max_size,
        max_queue=None,  # checked above: the threading API also takes (high, low)
        read_limit=read_limit,
        write_limit=write_limit,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
    )
    deflate = compression_option(compression)
    origins = origins_option(origins)
    the_logger = logger_option(logger, "portside.server")
    factory = ServerConnection if create_connection is None else create_connection

    if sock is None:
        if unix:
            if unix_path is None:
                raise TypeError("unix_serve() needs a path or a sock")
            kwargs.setdefault("family", socket.AF_UNIX)
            sock = socket.create_server(os.fspath(unix_path), **kwargs)
        else:
            sock = socket.create_server(("" if host is None else host, port or 0), **kwargs)
    elif host is not None or port is not None or unix_path is not None:
        raise ValueError("pass either sock, or an address, not both")

    def handle(client: socket.socket, address: Any) -> None:
        """The life of one connection, in its thread."""
        deadline = None if open_timeout is None else time.monotonic() + open_timeout
        lock = threading.Lock()
        try:
            if client.family in (socket.AF_INET, socket.AF_INET6):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            transport: Transport
            if ssl is not None:
                tls = TLSTransport(client, ssl, server_side=True, lock=lock)
                try:
                    tls.handshake(remaining(deadline))
                except (OSError, TimeoutError) as exc:
                    the_logger.info("%s: TLS handshake failed: %s", peer_name(address), exc)
                    tls.shutdown()
                    tls.close()
                    return
                transport = tls
            else:
                transport = Transport(client, lock)
        except BaseException:
            client.close()
            raise
        protocol = ServerProtocol(
            origins=origins,
            subprotocols=subprotocols,
            compression=deflate,
            server_header=server_header,
            max_size=options.max_size,
            read_limit=options.read_limit,
        )
        connection = new_connection(
            factory, transport, protocol, server, options=options, max_queue=max_queue
        )
        if select_subprotocol is not None:
            protocol.select_subprotocol = lambda offered: select_subprotocol(connection, offered)
        opened = False
        server._handshake_started(connection)
        try:
            opened = connection._handshake(deadline, process_request, process_response)
        finally:
            server._handshake_ended(connection, opened)
            if not opened:
                connection._discard()
        if not opened:
            return
        try:
            connection._start()
            try:
                handler(connection)
            except ConnectionClosed:
                pass  # the connection closed under the handler: not its fault
            except Exception:
                the_logger.error("connection handler failed", exc_info=True)
                # RFC 6455 7.4.1: 1011, the server met an unexpected condition.
                connection.close(1011)
            # RFC 6455 7.4.1: 1000 when done, 1001 when the server goes away.
            connection.close(1001 if server.closing else 1000)
        finally:
            server._connection_ended(connection)

    server = Server(sock, handle, the_logger)
    return server


def unix_serve(
    handler: Handler, path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> Server:
    """Create a WebSocket server listening on a Unix socket.

    Takes the options of :func:`serve` but ``host`` and ``port``.

    Args:
        handler: As for :func:`serve`.
        path: The file system path of the socket (or pass ``sock``).
        **kwargs: The options of :func:`serve`.
    """
    return serve(handler, _unix=True, _unix_path=path, **kwargs)
