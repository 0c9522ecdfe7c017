"""WebSocket clients on threads: :func:`connect` and :func:`unix_connect`.

:func:`connect` opens the TCP connection, performs the TLS and opening
handshakes in the calling thread, starts the connection's background thread
and returns the :class:`ClientConnection`, which is also a context manager::

    with connect("ws://localhost:8765/") as ws:
        ws.send("Hello")
        print(ws.recv())
"""

from __future__ import annotations

import logging
import os
import socket
import ssl as ssl_module
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any, Literal, Union

from ..asyncio.config import ConnectionOptions, compression_option
from ..exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from ..protocol.client import ClientProtocol
from ..protocol.deflate import Deflate
from ..protocol.headers import HeadersLike
from ..protocol.proxy import get_proxy, parse_proxy
from ..protocol.uri import WebSocketURI, parse_uri
from ..version import __version__
from .connection import Connection
from .messages import queue_limits
from .proxy import open_http_tunnel, open_socks_tunnel
from .transport import TLSTransport, Transport

__all__ = ["connect", "unix_connect", "ClientConnection"]

#: The default ``User-Agent`` request header, as the asyncio API sends it.
USER_AGENT = f"portside/{__version__}"

#: Redirects followed by :func:`connect` before giving up.
MAX_REDIRECTS = 10

LoggerLike = Union[logging.Logger, "logging.LoggerAdapter[Any]"]

# What connect() passes on to socket.create_connection().
_CREATE_CONNECTION_KWARGS = ("timeout", "source_address", "all_errors")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class ClientConnection(Connection):
    """The client side of a WebSocket connection: what :func:`connect` returns.

    Args:
        transport: The connection's :class:`~portside.sync.transport.Transport`,
            or a connected plain socket.
        protocol: The sans-I/O protocol.
        ping_interval: As for :func:`connect`.
        ping_timeout: As for :func:`connect`.
        close_timeout: As for :func:`connect`.
        max_queue: As for :func:`connect`.
    """

    protocol: ClientProtocol

    def __init__(
        self,
        transport: Transport | socket.socket,
        protocol: ClientProtocol,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: int | tuple[int | None, int | None] | None = 16,
    ) -> None:
        if not isinstance(transport, Transport):
            transport = Transport(transport)
        super().__init__(
            transport,
            protocol,
            max_queue=max_queue,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            logger=logging.getLogger("portside.client"),
        )

    def _handshake(self, deadline: float | None) -> None:
        """Send the request and read the response; raise if the handshake failed."""
        protocol = self.protocol
        transport = self.transport
        self.request = request = protocol.connect()
        try:
            with self._lock:
                data = transport.encode([protocol.send_request(request)])
            transport.send(data, _remaining(deadline))
            response = None
            while response is None:
                buffer = protocol.get_buffer()
                count = transport.recv_into(buffer, _remaining(deadline))
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
            raise InvalidMessage("connection closed during the opening handshake") from exc
        self.response = response
        protocol.process_response(response)
        rest = protocol.rest
        if rest:
            protocol.rest = b""
            self._feed(rest)


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
    **kwargs: Any,
) -> ClientConnection:
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
        follow_redirects: Follow HTTP redirects (at most 10).
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
        **kwargs: ``address`` (``(host, port)`` to connect to instead of the
            URI's), and what :func:`socket.create_connection` takes
            (``source_address``...).

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
    if open_timeout is not None and not open_timeout >= 0:
        raise ValueError(f"open_timeout must be >= 0 or None, not {open_timeout}")
    if extra_headers is not None and additional_headers is not None:
        raise TypeError("pass extra_headers or additional_headers, not both")
    headers = extra_headers if extra_headers is not None else additional_headers
    deflate = compression_option(compression)
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    elif logger is None:
        logger = logging.getLogger("portside.client")
    factory = ClientConnection if create_connection is None else create_connection
    if proxy is not None and proxy is not True:
        if not isinstance(proxy, str):
            raise TypeError(f"proxy must be True, None or a proxy's address, not {proxy!r}")
        parse_proxy(proxy)  # InvalidProxy now rather than at the first attempt
    target = parse_uri(uri)
    if not target.secure and ssl is not None:
        raise InvalidURI(uri, "ssl was given for a ws:// URI")
    deadline = None if open_timeout is None else time.monotonic() + open_timeout

    def open_transport(target: WebSocketURI, lock: threading.Lock) -> Transport:
        """Connect (through the proxy, if any) and perform the TLS handshake."""
        tunnel: Transport | None = None
        if sock is not None:
            client = sock
        elif unix:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                client.settimeout(_remaining(deadline))
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
                    **{"timeout": _remaining(deadline), **kwargs},
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
                tls.handshake(_remaining(deadline))
            except TimeoutError:
                raise TimeoutError("timed out during the TLS handshake") from None
            return tls
        except BaseException:
            client.close()
            raise

    def attempt(target: WebSocketURI) -> ClientConnection:
        lock = threading.Lock()
        transport = open_transport(target, lock)
        protocol = ClientProtocol(
            target,
            origin=origin,
            extra_headers=headers,
            subprotocols=subprotocols,
            compression=deflate,
            user_agent_header=user_agent_header,
            max_size=options.max_size,
            read_limit=options.read_limit,
        )
        try:
            connection = factory(
                transport,
                protocol,
                ping_interval=options.ping_interval,
                ping_timeout=options.ping_timeout,
                close_timeout=options.close_timeout,
                max_queue=max_queue,
            )
        except BaseException:
            transport.close()
            raise
        connection.logger = logger
        connection.write_limit = options.write_limit
        try:
            connection._handshake(deadline)
        except BaseException:
            connection._discard()
            raise
        connection._start()
        return connection

    for _ in range(MAX_REDIRECTS + 1):
        try:
            return attempt(target)
        except InvalidStatus as exc:
            response = exc.response
            if not follow_redirects or response.status_code not in (301, 302, 303, 307, 308):
                raise
            locations = response.headers.get_all("Location")
            if len(locations) != 1:
                raise  # none, or several to choose from: not followed
            scheme = "wss" if target.secure else "ws"
            new_uri = urllib.parse.urljoin(
                f"{scheme}://{target.host_header}{target.path}", locations[0]
            )
            new_target = parse_uri(new_uri)
            if target.secure and not new_target.secure:
                raise InvalidURI(new_uri, "redirect from wss:// to ws:// refused") from None
            if sock is not None:
                raise InvalidHandshake(
                    f"cannot follow the redirect to {new_uri} with the socket given"
                ) from exc
            target = new_target
    raise InvalidHandshake(f"more than {MAX_REDIRECTS} redirects")


def unix_connect(
    path: str | os.PathLike[str] | None = None,
    uri: str | None = None,
    **kwargs: Any,
) -> ClientConnection:
    """Open a WebSocket connection over a Unix socket.

    Takes the options of :func:`connect`.

    Args:
        path: The file system path of the socket (or pass ``sock``).
        uri: The URI of the request; ``ws://localhost/`` by default
            (``wss://localhost/`` with ``ssl``).
        **kwargs: The options of :func:`connect`.
    """
    if path is None and kwargs.get("sock") is None:
        raise TypeError("unix_connect() needs a path or a sock")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return connect(uri, _unix=True, _unix_path=path, **kwargs)
