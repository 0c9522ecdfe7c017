"""WebSocket clients on asyncio: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, cast

from ..exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from ..protocol.client import ClientProtocol
from ..protocol.deflate import Deflate
from ..protocol.headers import HeadersLike
from ..protocol.uri import WebSocketURI, parse_uri
from ..version import __version__
from .config import ConnectionOptions, compression_option
from .connection import Connection, arena_for

__all__ = ["connect", "unix_connect", "ClientConnection", "Connect"]

USER_AGENT = f"portside/{__version__}"

#: Redirects followed by :func:`connect` before giving up.
MAX_REDIRECTS = 10


class ClientConnection(Connection):
    """The client side of a WebSocket connection: what :func:`connect` returns."""

    protocol: ClientProtocol

    def __init__(self, protocol: ClientProtocol, options: ConnectionOptions, logger: Any) -> None:
        super().__init__(
            protocol,
            max_queue=options.max_queue,
            write_limit=options.write_limit,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            logger=logger,
        )
        self._handshaking = True
        self.handshake_done: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(self.write_limit, self.write_limit // 4)
        self._hook_transport()
        protocol = self.protocol
        self.request = protocol.connect()
        self.transport.write(protocol.send_request(self.request))

    def _receive_handshake(self, nbytes: int) -> None:
        protocol = self.protocol
        data = protocol.read_bytes(nbytes)
        try:
            response = protocol.receive_response(data)
            if response is None:
                return
            self.response = response
            protocol.process_response(response)
        except (InvalidHandshake, InvalidMessage) as exc:
            self._handshake_failed(exc)
            return
        self._handshaking = False
        self._start_keepalive()
        if protocol.rest:
            self._feed(protocol.rest)
            protocol.rest = b""
        if not self.handshake_done.done():
            self.handshake_done.set_result(None)

    def _handshake_failed(self, exc: BaseException) -> None:
        self._handshaking = False
        if not self.handshake_done.done():
            self.handshake_done.set_exception(exc)
        self.transport.close()

    def eof_received(self) -> bool:  # noqa: D102
        if self._handshaking and self.protocol._parser is not None:
            # A response without Content-Length ends with the connection.
            try:
                response = self.protocol.receive_response_eof()
                self.response = response
                self.protocol.process_response(response)
            except (InvalidHandshake, InvalidMessage) as exc:
                self._handshake_failed(exc)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:  # noqa: D102
        if not self.handshake_done.done():
            error = InvalidMessage("connection closed during the opening handshake")
            if exc is not None:
                error.__cause__ = exc
            self.handshake_done.set_exception(error)
        super().connection_lost(exc)


class Connect:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, create: Callable[[], Awaitable[ClientConnection]]) -> None:
        self._create = create
        self._connection: ClientConnection | None = None

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._start().__await__()

    async def _start(self) -> ClientConnection:
        self._connection = await self._create()
        return self._connection

    async def __aenter__(self) -> ClientConnection:
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        await self._connection.close()


Dial = Callable[
    [asyncio.AbstractEventLoop, Callable[[], ClientConnection], WebSocketURI],
    Awaitable[tuple[asyncio.BaseTransport, ClientConnection]],
]


def _connect(
    uri: str,
    dial: Dial,
    *,
    origin: str | None = None,
    extra_headers: HeadersLike | None = None,
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = USER_AGENT,
    subprotocols: Sequence[str] | None = None,
    compression: str | Deflate | None = "deflate",
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    read_limit: int = 2**16,
    write_limit: int = 2**16,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
    follow_redirects: bool = True,
) -> Connect:
    options = ConnectionOptions.validate(
        max_size=max_size,
        max_queue=max_queue,
        read_limit=read_limit,
        write_limit=write_limit,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
    )
    if open_timeout is not None and open_timeout < 0:
        raise ValueError(f"open_timeout must be >= 0 or None, not {open_timeout}")
    if extra_headers is not None and additional_headers is not None:
        raise TypeError("pass extra_headers or additional_headers, not both")
    headers = extra_headers if extra_headers is not None else additional_headers
    deflate = compression_option(compression)
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    elif logger is None:
        logger = logging.getLogger("portside.client")
    parsed = parse_uri(uri)

    async def attempt(target: WebSocketURI) -> ClientConnection:
        loop = asyncio.get_running_loop()
        arena = arena_for(loop)

        def factory() -> ClientConnection:
            protocol = ClientProtocol(
                target,
                origin=origin,
                extra_headers=headers,
                subprotocols=subprotocols,
                compression=deflate,
                user_agent_header=user_agent_header,
                max_size=options.max_size,
                read_limit=options.read_limit,
                arena=arena,
            )
            return ClientConnection(protocol, options, logger)

        _, connection = await dial(loop, factory, target)
        try:
            await connection.handshake_done
        except BaseException:
            connection.transport.abort()
            raise
        return connection

    async def create() -> ClientConnection:
        target = parsed
        for _ in range(MAX_REDIRECTS + 1):
            try:
                if open_timeout is None:
                    return await attempt(target)
                return await asyncio.wait_for(attempt(target), open_timeout)
            except InvalidStatus as exc:
                response = exc.response
                if not follow_redirects or response.status_code not in (301, 302, 303, 307, 308):
                    raise
                locations = response.headers.get_all("Location")
                if len(locations) != 1:
                    raise  # none, or several to choose from: not followed
                location = locations[0]
                new_uri = urllib.parse.urljoin(
                    f"{'wss' if target.secure else 'ws'}://{target.host_header}{target.path}",
                    location,
                )
                new_target = parse_uri(new_uri)
                if target.secure and not new_target.secure:
                    raise InvalidURI(new_uri, "redirect from wss:// to ws:// refused") from None
                target = new_target
        raise InvalidHandshake(f"more than {MAX_REDIRECTS} redirects")

    return Connect(create)


def connect(
    uri: str,
    *,
    ssl: Any = None,
    server_hostname: str | None = None,
    sock: socket.socket | None = None,
    **kwargs: Any,
) -> Connect:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    ``await connect(uri)`` returns a :class:`ClientConnection`; ``async with
    connect(uri) as ws:`` also closes it on exit. ``docs/reference.md``
    documents every option.

    Args:
        uri: The server's address.
        ssl: An :class:`ssl.SSLContext` for ``wss://``; the default context
            (certificates verified) when ``None``.
        server_hostname: The name to check the server's certificate against.
        sock: A connected socket to use instead of opening one.
        origin: The ``Origin`` header.
        extra_headers: More request headers (``additional_headers`` also works).
        user_agent_header: The ``User-Agent`` header; ``None`` omits it.
        subprotocols: Subprotocols to offer, by preference.
        compression: ``"deflate"``, a :class:`~portside.Deflate`, or ``None``.
        max_size: The largest message accepted, in bytes; ``None``: no limit.
        max_queue: Messages buffered before reading stops; ``None``: no limit.
        read_limit: The most bytes read from the socket in one go, besides room
            for a frame header.
        write_limit: Bytes buffered for sending above which ``send()`` waits.
        open_timeout: Seconds allowed to connect and handshake; ``None``: forever.
        ping_interval: Seconds between keepalive pings; ``None`` disables them.
        ping_timeout: Seconds to wait for a keepalive pong; ``None``: forever.
        close_timeout: Seconds to wait for the closing handshake.
        logger: A logger or logger name; default ``portside.client``.
        follow_redirects: Follow HTTP redirects (at most 10).
        **kwargs: Other keyword arguments go to
            :meth:`asyncio.loop.create_connection`.
    """
    create_kwargs = {key: kwargs.pop(key) for key in _CREATE_CONNECTION_KWARGS if key in kwargs}

    def dial(
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], ClientConnection],
        target: WebSocketURI,
    ) -> Awaitable[tuple[asyncio.BaseTransport, ClientConnection]]:
        context = ssl
        if target.secure and context is None:
            import ssl as ssl_module

            context = ssl_module.create_default_context()
        if not target.secure and ssl is not None:
            raise InvalidURI(f"ws://{target.host_header}", "ssl was given for a ws:// URI")
        extra: dict[str, Any] = {}
        if context is not None:
            extra["ssl"] = context
            extra["server_hostname"] = server_hostname or target.host
        if sock is not None:
            return loop.create_connection(factory, sock=sock, **extra, **create_kwargs)
        return loop.create_connection(factory, target.host, target.port, **extra, **create_kwargs)

    return _connect(uri, dial, **kwargs)


def unix_connect(
    path: str | None = None,
    uri: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: Any = None,
    **kwargs: Any,
) -> Connect:
    """Open a WebSocket connection over a Unix socket.

    Takes the options of :func:`connect`.

    Args:
        path: The file system path of the socket.
        uri: The URI of the request; ``ws://localhost/`` by default.
        sock: A connected Unix socket to use instead of ``path``.
        ssl: An :class:`ssl.SSLContext`, when the server speaks TLS.
        **kwargs: The options of :func:`connect`.
    """
    if uri is None:
        uri = "wss://localhost/" if ssl is not None else "ws://localhost/"
    create_kwargs = {key: kwargs.pop(key) for key in _CREATE_CONNECTION_KWARGS if key in kwargs}

    def dial(
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], ClientConnection],
        target: WebSocketURI,
    ) -> Awaitable[tuple[asyncio.BaseTransport, ClientConnection]]:
        extra: dict[str, Any] = {}
        if ssl is not None:
            extra["ssl"] = ssl
            extra["server_hostname"] = target.host
        return loop.create_unix_connection(factory, path, sock=sock, **extra, **create_kwargs)

    return _connect(uri, dial, **kwargs)


# Keyword arguments that connect() passes on to loop.create_connection().
_CREATE_CONNECTION_KWARGS = (
    "family",
    "proto",
    "flags",
    "local_addr",
    "ssl_handshake_timeout",
    "ssl_shutdown_timeout",
    "happy_eyeballs_delay",
    "interleave",
)
