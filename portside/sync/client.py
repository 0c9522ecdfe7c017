"""WebSocket clients on threads: :func:`connect` and :func:`unix_connect`.

:func:`connect` opens the TCP connection, performs the TLS and opening
handshakes in the calling thread, starts the connection's background thread
and returns the :class:`ClientConnection`, which is also a context manager::

    with connect("ws://localhost:8765/") as ws:
        ws.send("Hello")
        print(ws.recv())
"""

from __future__ import annotations

import os
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, cast, overload

from ..exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from ..http11 import USER_AGENT as USER_AGENT  # the default User-Agent
from ..protocol.client import ClientProtocol
from ..protocol.deflate import Deflate
from ..protocol.headers import HeadersLike
from ..protocol.options import (
    ConnectionOptions,
    LoggerLike,
    check_open_timeout,
    compression_option,
    logger_option,
    request_headers_option,
)
from ..protocol.proxy import check_proxy_option, get_proxy, parse_proxy
from ..protocol.reconnect import Retry, backoff, process_exception
from ..protocol.redirect import MAX_REDIRECTS as MAX_REDIRECTS  # importable here too
from ..protocol.redirect import Redirects
from ..protocol.uri import WebSocketURI, parse_uri
from .connection import Connection, new_connection
from .messages import queue_limits
from .proxy import open_http_tunnel, open_socks_tunnel
from .transport import TLSTransport, Transport, remaining

__all__ = ["connect", "unix_connect", "reconnect", "unix_reconnect", "ClientConnection"]

# What connect() passes on to socket.create_connection().
_CREATE_CONNECTION_KWARGS = ("timeout", "source_address", "all_errors")


class ClientConnection(Connection):
    """The client side of a WebSocket connection: what :func:`connect` returns.

    Takes the arguments of :class:`~portside.sync.connection.Connection`; its
    logger is ``portside.client`` unless given.
    """

    protocol: ClientProtocol

    def _handshake(self, deadline: float | None) -> None:
        """Send the request and read the response; raise if the handshake failed."""
        protocol = self.protocol
        transport = self.transport
        self.request = request = protocol.connect()
        try:
            with self._lock:
                data = transport.encode([protocol.send_request(request)])
            transport.send(data, remaining(deadline))
            response = None
            while response is None:
                buffer = protocol.get_buffer()
                count = transport.recv_into(buffer, remaining(deadline))
                if count:
                    response = protocol.receive_response(protocol.read_bytes(count))
                else:
                    # A response without Content-Length ends with the connection.
                    response = protocol.receive_response_eof()
        except TimeoutError:
            raise TimeoutError("timed out during the opening handshake") from None
        except InvalidMessage:
            raise
        except OSError as exc:
            # EOFError as the cause, as when the peer closes: a reconnecting
            # client retries.
            eof = EOFError("connection closed during the opening handshake")
            eof.__cause__ = exc
            raise InvalidMessage("connection closed during the opening handshake") from eof
        self.response = response
        protocol.process_response(response)
        rest = protocol.rest
        if rest:
            protocol.rest = b""
            self._feed(rest)


def _opener(
    uri: str,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: str | Deflate | None = "deflate",
    additional_headers: HeadersLike | None = None,
    extra_headers: HeadersLike | None = None,
    user_agent_header: str | None = USER_AGENT,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | tuple[int | None, int | None] | None = 16,
    read_limit: int = 2**16,
    write_limit: int = 2**16,
    logger: LoggerLike | str | None = None,
    create_connection: type[ClientConnection] | None = None,
    follow_redirects: bool = True,
    proxy: str | Literal[True] | None = True,
    proxy_ssl: ssl_module.SSLContext | None = None,
    proxy_server_hostname: str | None = None,
    **kwargs: Any,
) -> Callable[[], ClientConnection]:
    """Validate the options of :func:`connect`; return a function that opens a connection.

    The options are checked now, once; each call of the function returned opens
    a new connection (with a fresh ``open_timeout``), following redirects.
    """
    unix_path = kwargs.pop("_unix_path", None)
    unix = kwargs.pop("_unix", False)
    address = kwargs.pop("address", None)
    unknown = set(kwargs) - set(_CREATE_CONNECTION_KWARGS)
    if unknown:
        raise TypeError(f"connect() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
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
    check_open_timeout(open_timeout)
    headers = request_headers_option(extra_headers, additional_headers)
    deflate = compression_option(compression)
    the_logger = logger_option(logger, "portside.client")
    factory = ClientConnection if create_connection is None else create_connection
    check_proxy_option(proxy)
    parsed = parse_uri(uri)
    if not parsed.secure and ssl is not None:
        raise InvalidURI(uri, "ssl was given for a ws:// URI")

    def open_transport(
        target: WebSocketURI, lock: threading.Lock, deadline: float | None
    ) -> Transport:
        """Connect (through the proxy, if any) and perform the TLS handshake."""
        tunnel: Transport | None = None
        if sock is not None:
            client = sock
        elif unix:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                client.settimeout(remaining(deadline))
                client.connect(os.fspath(unix_path))
            except BaseException:
                client.close()
                raise
        else:
            via = None
            if address is None and proxy is not None:
                proxy_address = get_proxy(target) if proxy is True else proxy
                via = None if proxy_address is None else parse_proxy(proxy_address)
            if via is None:
                client = socket.create_connection(
                    address or (target.host, target.port),
                    **{"timeout": remaining(deadline), **kwargs},
                )
            elif via.scheme.startswith("socks"):
                client = open_socks_tunnel(
                    via, target, deadline, source_address=kwargs.get("source_address")
                )
            else:
                tunnel = open_http_tunnel(
                    via,
                    target,
                    deadline,
                    lock,
                    user_agent_header=user_agent_header,
                    ssl=proxy_ssl,
                    server_hostname=proxy_server_hostname,
                    source_address=kwargs.get("source_address"),
                )
                client = tunnel.sock
        try:
            client.settimeout(None)
            if client.family in (socket.AF_INET, socket.AF_INET6):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if not target.secure:
                return tunnel if tunnel is not None else Transport(client, lock)
            context = ssl if ssl is not None else ssl_module.create_default_context()
            name = server_hostname or target.host
            if isinstance(tunnel, TLSTransport):
                # wss:// through an https:// proxy: TLS with the server inside
                # TLS with the proxy.
                tls = tunnel
                tls.add_layer(context, server_hostname=name)
            else:
                tls = TLSTransport(
                    client, context, server_side=False, server_hostname=name, lock=lock
                )
            try:
                tls.handshake(remaining(deadline))
            except TimeoutError:
                raise TimeoutError("timed out during the TLS handshake") from None
            return tls
        except BaseException:
            client.close()
            raise

    def attempt(
        target: WebSocketURI, request_headers: HeadersLike | None, deadline: float | None
    ) -> ClientConnection:
        lock = threading.Lock()
        transport = open_transport(target, lock, deadline)
        protocol = ClientProtocol(
            target,
            origin=origin,
            extra_headers=request_headers,
            subprotocols=subprotocols,
            compression=deflate,
            user_agent_header=user_agent_header,
            max_size=options.max_size,
            read_limit=options.read_limit,
        )
        connection = new_connection(
            factory, transport, protocol, options=options, max_queue=max_queue
        )
        connection.logger = the_logger
        try:
            connection._handshake(deadline)
        except BaseException:
            connection._discard()
            raise
        connection._start()
        return connection

    def open_connection() -> ClientConnection:
        deadline = None if open_timeout is None else time.monotonic() + open_timeout
        redirects = Redirects(parsed, headers, follow_redirects)
        while True:
            try:
                return attempt(redirects.uri, redirects.headers, deadline)
            except InvalidStatus as exc:
                if not redirects.follow(exc.response):
                    raise
                if sock is not None:
                    raise InvalidHandshake(
                        f"cannot follow the redirect to {redirects.location} with the socket given"
                    ) from exc

    return open_connection


@overload
def connect(uri: str, *, legacy: Literal[False], **kwargs: Any) -> reconnect: ...


@overload
def connect(
    uri: str, *, legacy: Literal[True] | None = None, **kwargs: Any
) -> ClientConnection: ...


def connect(
    uri: str,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: str | Deflate | None = "deflate",
    additional_headers: HeadersLike | None = None,
    extra_headers: HeadersLike | None = None,
    user_agent_header: str | None = USER_AGENT,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | tuple[int | None, int | None] | None = 16,
    read_limit: int = 2**16,
    write_limit: int = 2**16,
    logger: LoggerLike | str | None = None,
    create_connection: type[ClientConnection] | None = None,
    follow_redirects: bool = True,
    proxy: str | Literal[True] | None = True,
    proxy_ssl: ssl_module.SSLContext | None = None,
    proxy_server_hostname: str | None = None,
    legacy: bool | None = None,
    **kwargs: Any,
) -> ClientConnection | reconnect:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    Returns once the opening handshake succeeded. Use the connection as a
    context manager, which closes it on exit, or call ``close()``.
    ``docs/reference.md`` documents every option.

    Args:
        uri: The server's address.
        sock: A connected socket to use instead of opening one.
        ssl: An :class:`ssl.SSLContext` for ``wss://``; the default context
            (certificates verified) when ``None``.
        server_hostname: The name to check the server's certificate against.
        origin: The ``Origin`` header.
        subprotocols: Subprotocols to offer, by preference.
        compression: ``"deflate"``, a :class:`~portside.Deflate`, or ``None``.
        additional_headers: More request headers (``extra_headers`` also works).
        extra_headers: The older name of ``additional_headers``.
        user_agent_header: The ``User-Agent`` header; ``None`` omits it.
        open_timeout: Seconds allowed to connect and handshake; ``None``: forever.
        ping_interval: Seconds between keepalive pings; ``None`` disables them.
        ping_timeout: Seconds to wait for a keepalive pong; ``None``: forever.
        close_timeout: Seconds to wait for the closing handshake.
        max_size: The largest message accepted, in bytes; ``None``: no limit.
        max_queue: Messages buffered before reading stops, or ``(high, low)``;
            ``None``: no limit.
        read_limit: The most bytes read from the socket in one go.
        write_limit: Control frames buffered while the socket is full before
            reading stops, in bytes.
        logger: A logger or logger name; default ``portside.client``.
        create_connection: A :class:`ClientConnection` subclass to use.
        follow_redirects: Follow HTTP redirects (at most 10; credentials are
            not passed on to another origin).
        proxy: ``True``: the proxy the environment configures (``wss_proxy``,
            ``ws_proxy``, ``socks_proxy``, ``https_proxy``, ``http_proxy``,
            ``no_proxy``); ``None``: no proxy; or a proxy's address:
            ``http://``, ``https://`` (HTTP ``CONNECT``), ``socks5h://``,
            ``socks5://``, ``socks4a://``, ``socks4://`` (python-socks), with
            ``user:password@`` for proxy authentication. Not used with
            ``sock``, ``address`` or a Unix socket.
        proxy_ssl: For an ``https://`` proxy, the :class:`ssl.SSLContext` that
            checks the proxy (default context when ``None``).
        proxy_server_hostname: The name to check the proxy's certificate against.
        legacy: ``False`` returns a :class:`reconnect`; see above.
        **kwargs: ``address`` (``(host, port)`` to connect to instead of the
            URI's), and what :func:`socket.create_connection` takes
            (``source_address``...).

    ``legacy=False`` returns a :class:`reconnect` instead, as in websockets:
    use it as a context manager, or iterate over it to reconnect after
    failures. ``legacy=True`` and ``None`` (the default) return the connection.

    Raises:
        InvalidURI: If ``uri`` is not a valid WebSocket URI.
        InvalidProxy: If ``proxy`` is not a proxy address portside supports.
        OSError: If the TCP connection (to the server or the proxy) failed.
        ProxyError: If the proxy refused (:class:`InvalidProxyStatus`, with its
            response) or answered wrongly.
        InvalidHandshake: If the opening handshake failed; :class:`InvalidStatus`
            when the server answered with another status than 101.
        TimeoutError: If the opening handshake took more than ``open_timeout``.
    """
    # The options, by name, as _opener() takes them: every argument but two.
    options = dict(locals())
    del options["uri"], options["legacy"]
    options.update(options.pop("kwargs"))
    if legacy is False:
        return reconnect(uri, **options)
    return _opener(uri, **options)()


class reconnect:  # websockets' name, lower case
    """Like :func:`connect`, as an iterator that reconnects after failures.

    ::

        for websocket in reconnect("ws://localhost:8765/"):
            try:
                ...
            except portside.ConnectionClosed:
                continue

    Each iteration opens a connection and closes it once the loop's body is
    done. When opening fails with a transient error (see
    :func:`~portside.protocol.reconnect.process_exception`: network errors,
    a handshake the server cut short, 500, 502, 503, 504), it tries again after
    a delay from ``reconnect_delays`` (exponential backoff with jitter); when
    it fails with another error, the error is raised and the loop ends. A
    server closing with 1012, 1013 or 1014 (come back later) also gets the next
    delay before the next attempt. ``with reconnect(...) as websocket:`` opens
    one connection, as :func:`connect`.

    Args:
        uri: The server's address.
        process_exception: ``process_exception(exc)`` returns ``None`` to retry
            after ``exc``, or the exception to raise (``exc`` or another).
        reconnect_delays: Returns an iterator of delays between attempts, in
            seconds; :func:`~portside.protocol.reconnect.backoff` by default.
        **kwargs: The options of :func:`connect`.
    """

    def __init__(
        self,
        uri: str,
        *,
        process_exception: Callable[[Exception], Exception | None] = process_exception,
        reconnect_delays: Callable[[], Iterator[float]] = backoff,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("legacy", None)
        self.uri = uri
        self._open = _opener(uri, **kwargs)
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.logger: LoggerLike = logger_option(kwargs.get("logger"), "portside.client")
        self._connection: ClientConnection | None = None

    def connect(self) -> ClientConnection:
        """Open one connection, following redirects."""
        return self._open()

    def __enter__(self) -> ClientConnection:
        if self._connection is not None:
            raise RuntimeError("reconnect() isn't reentrant")
        self._connection = self.connect()
        return self._connection

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        assert connection is not None
        connection.__exit__(exc_type, exc_value, traceback)

    def __iter__(self) -> Generator[ClientConnection, None, None]:
        retry = Retry(self.process_exception, self.reconnect_delays, self.logger)
        while True:
            try:
                with self as connection:
                    yield connection
            except Exception as exc:
                time.sleep(retry.after_failure(exc))  # or raises exc, if fatal
            else:
                delay = retry.after_close(connection.close_code)
                if delay is not None:
                    time.sleep(delay)


@overload
def unix_connect(
    path: str | os.PathLike[str] | None = None,
    uri: str | None = None,
    *,
    legacy: Literal[False],
    **kwargs: Any,
) -> reconnect: ...


@overload
def unix_connect(
    path: str | os.PathLike[str] | None = None,
    uri: str | None = None,
    *,
    legacy: Literal[True] | None = None,
    **kwargs: Any,
) -> ClientConnection: ...


def unix_connect(
    path: str | os.PathLike[str] | None = None,
    uri: str | None = None,
    *,
    legacy: bool | None = None,
    **kwargs: Any,
) -> ClientConnection | reconnect:
    """Open a WebSocket connection over a Unix socket.

    Takes the options of :func:`connect`.

    Args:
        path: The file system path of the socket (or pass ``sock``).
        uri: The URI of the request; ``ws://localhost/`` by default
            (``wss://localhost/`` with ``ssl``).
        legacy: ``False`` returns a :class:`reconnect`, as :func:`unix_reconnect`.
        **kwargs: The options of :func:`connect`.
    """
    if legacy is False:
        return unix_reconnect(path, uri, **kwargs)
    if path is None and kwargs.get("sock") is None:
        raise TypeError("unix_connect() needs a path or a sock")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return cast(ClientConnection, connect(uri, _unix=True, _unix_path=path, **kwargs))


def unix_reconnect(
    path: str | os.PathLike[str] | None = None,
    uri: str | None = None,
    **kwargs: Any,
) -> reconnect:
    """Like :class:`reconnect`, over a Unix socket (as :func:`unix_connect`)."""
    if path is None and kwargs.get("sock") is None:
        raise TypeError("unix_reconnect() needs a path or a sock")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return reconnect(uri, _unix=True, _unix_path=path, **kwargs)
