"""WebSocket clients on asyncio: :func:`connect` and :func:`unix_connect`.

``await connect(uri)`` and ``async with connect(uri)`` open one connection;
``async for ws in connect(uri)`` reconnects after transient failures, with the
delays of :func:`~portside.protocol.reconnect.backoff` and the classification of
:func:`process_exception`. ``proxy=`` (by default, the environment's proxy)
reaches the server through an HTTP or SOCKS proxy (:mod:`portside.asyncio.proxy`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Literal, Union, cast

from ..exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from ..http11 import USER_AGENT
from ..protocol.client import ClientProtocol
from ..protocol.deflate import Deflate
from ..protocol.headers import Headers, HeadersLike
from ..protocol.options import ConnectionOptions, compression_option
from ..protocol.proxy import get_proxy, parse_proxy
from ..protocol.reconnect import RETRY_LATER_CLOSE_CODES, backoff, process_exception
from ..protocol.uri import WebSocketURI, parse_uri
from .connection import Connection, arena_for
from .proxy import open_http_tunnel, open_socks_tunnel

__all__ = ["connect", "unix_connect", "ClientConnection", "Connect", "process_exception"]

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
            # EOFError as the cause, as in websockets: process_exception() then
            # treats it as a network failure, which a reconnecting client retries.
            eof = EOFError("connection closed during the opening handshake")
            eof.__cause__ = exc
            error = InvalidMessage("connection closed during the opening handshake")
            error.__cause__ = eof
            self.handshake_done.set_exception(error)
        super().connection_lost(exc)


ProcessException = Callable[[Exception], Union[Exception, None]]


class Connect:
    """What :func:`connect` returns: await it, use it with ``async with``, or iterate.

    ``async for ws in connect(...)`` yields a new connection each time the
    previous one ends, reconnecting after transient failures; see :func:`connect`.
    """

    def __init__(
        self,
        create: Callable[[], Awaitable[ClientConnection]],
        *,
        process_exception: ProcessException = process_exception,
        reconnect_delays: Callable[[], Generator[float, None, None]] = backoff,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self._create = create
        self._connection: ClientConnection | None = None
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.logger = logger

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

    def __aiter__(self) -> AsyncIterator[ClientConnection]:
        return self._reconnect()

    async def _reconnect(self) -> AsyncIterator[ClientConnection]:
        delays: Generator[float, None, None] | None = None
        while True:
            try:
                async with self as connection:
                    yield connection
            except Exception as exc:
                # process_exception returns None (retry) or an exception to
                # raise; raising one works too, as in websockets.
                try:
                    fatal = self.process_exception(exc)
                except Exception as raised:
                    fatal = raised
                if fatal is exc:
                    raise
                if fatal is not None:
                    raise fatal from exc
                if delays is None:
                    delays = self.reconnect_delays()
                delay = next(delays)
                self.logger.info(
                    "connect failed; reconnecting in %.1f seconds: %s",
                    delay,
                    traceback.format_exception_only(type(exc), exc)[0].strip(),
                )
                await asyncio.sleep(delay)
            else:
                code = connection.close_code
                if code in RETRY_LATER_CLOSE_CODES:
                    # The server asked to come back later: go on with backoff
                    # rather than reconnecting at once.
                    if delays is None:
                        delays = self.reconnect_delays()
                    delay = next(delays)
                    self.logger.info(
                        "server closed with code %d; reconnecting in %.1f seconds", code, delay
                    )
                    await asyncio.sleep(delay)
                else:
                    # The connection opened: the next failure starts backoff anew.
                    delays = None


Dial = Callable[
    [asyncio.AbstractEventLoop, Callable[[], ClientConnection], WebSocketURI],
    Awaitable[tuple[asyncio.BaseTransport, ClientConnection]],
]

# Request headers that carry credentials: not sent on to another origin.
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


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
    process_exception: ProcessException = process_exception,
    reconnect_delays: Callable[[], Generator[float, None, None]] = backoff,
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
    if not callable(process_exception):
        raise TypeError("process_exception must be callable")
    if not callable(reconnect_delays):
        raise TypeError("reconnect_delays must be callable and return an iterator of delays")
    deflate = compression_option(compression)
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    elif logger is None:
        logger = logging.getLogger("portside.client")
    parsed = parse_uri(uri)

    async def attempt(target: WebSocketURI, headers: HeadersLike | None) -> ClientConnection:
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
        request_headers = headers
        for _ in range(MAX_REDIRECTS + 1):
            try:
                if open_timeout is None:
                    return await attempt(target, request_headers)
                try:
                    return await asyncio.wait_for(attempt(target, request_headers), open_timeout)
                except asyncio.TimeoutError as exc:
                    # The built-in TimeoutError (asyncio's is another class on
                    # Python 3.10), as documented and as websockets raises.
                    raise TimeoutError("timed out during opening handshake") from exc
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
                if (new_target.secure, new_target.host, new_target.port) != (
                    target.secure,
                    target.host,
                    target.port,
                ) and request_headers is not None:
                    # Another origin: do not hand it this one's credentials.
                    request_headers = Headers(
                        (name, value)
                        for name, value in Headers(request_headers).raw_items()
                        if name.lower() not in _CREDENTIAL_HEADERS
                    )
                target = new_target
        raise InvalidHandshake(f"more than {MAX_REDIRECTS} redirects")

    return Connect(
        create,
        process_exception=process_exception,
        reconnect_delays=reconnect_delays,
        logger=logger,
    )


def connect(
    uri: str,
    *,
    ssl: Any = None,
    server_hostname: str | None = None,
    sock: socket.socket | None = None,
    proxy: str | Literal[True] | None = True,
    proxy_ssl: Any = None,
    proxy_server_hostname: str | None = None,
    proxy_ssl_handshake_timeout: float | None = None,
    proxy_ssl_shutdown_timeout: float | None = None,
    **kwargs: Any,
) -> Connect:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    ``await connect(uri)`` returns a :class:`ClientConnection`; ``async with
    connect(uri) as ws:`` also closes it on exit; ``async for ws in
    connect(uri):`` reconnects whenever a connection ends, waiting after
    transient failures (see :func:`process_exception`).
    ``docs/reference.md`` documents every option.

    Args:
        uri: The server's address.
        ssl: An :class:`ssl.SSLContext` for ``wss://``; the default context
            (certificates verified) when ``None``.
        server_hostname: The name to check the server's certificate against.
        sock: A connected socket to use instead of opening one.
        proxy: ``True``: the proxy the environment configures (``wss_proxy``,
            ``ws_proxy``, ``socks_proxy``, ``https_proxy``, ``http_proxy``,
            ``no_proxy``); ``None``: no proxy; or a proxy's address,
            ``http://``, ``https://``, ``socks5h://``, ``socks5://``,
            ``socks4a://`` or ``socks4://``, with ``user:password@`` for
            proxy authentication.
        proxy_ssl: For an ``https://`` proxy, the :class:`ssl.SSLContext` that
            checks the proxy (default context when ``None``).
        proxy_server_hostname: The name to check the proxy's certificate against.
        proxy_ssl_handshake_timeout: TLS handshake timeout with the proxy.
        proxy_ssl_shutdown_timeout: TLS shutdown timeout with the proxy.
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
        process_exception: ``process_exception(exc)`` decides, when reconnecting,
            whether a failed attempt is retried (``None``) or ends the loop (an
            exception to raise); :func:`process_exception` by default.
        reconnect_delays: Returns an iterator of the delays between attempts;
            :func:`~portside.protocol.reconnect.backoff` by default.
        **kwargs: Other keyword arguments go to
            :meth:`asyncio.loop.create_connection` (to the proxy, through one).

    Raises:
        InvalidURI: If ``uri`` is not a WebSocket URI.
        InvalidProxy: If ``proxy`` is not a proxy address portside supports.
    """
    create_kwargs = {key: kwargs.pop(key) for key in _CREATE_CONNECTION_KWARGS if key in kwargs}
    if proxy is not None and proxy is not True:
        if not isinstance(proxy, str):
            raise TypeError(f"proxy must be True, None or a proxy's address, not {proxy!r}")
        parse_proxy(proxy)  # InvalidProxy now rather than at the first attempt
    proxy_tls: dict[str, Any] = {}
    if proxy_ssl_handshake_timeout is not None:
        proxy_tls["ssl_handshake_timeout"] = proxy_ssl_handshake_timeout
    if proxy_ssl_shutdown_timeout is not None:
        proxy_tls["ssl_shutdown_timeout"] = proxy_ssl_shutdown_timeout
    user_agent = kwargs.get("user_agent_header", USER_AGENT)

    async def dial(
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], ClientConnection],
        target: WebSocketURI,
    ) -> tuple[asyncio.BaseTransport, ClientConnection]:
        context = ssl
        if target.secure and context is None:
            import ssl as ssl_module

            context = ssl_module.create_default_context()
        if not target.secure and ssl is not None:
            raise InvalidURI(f"ws://{target.host_header}", "ssl was given for a ws:// URI")
        tls: dict[str, Any] = {}
        if context is not None:
            tls["ssl"] = context
            tls["server_hostname"] = server_hostname or target.host
        if sock is not None:
            return await loop.create_connection(factory, sock=sock, **tls, **create_kwargs)
        address = get_proxy(target) if proxy is True else proxy
        if address is None:
            return await loop.create_connection(
                factory, target.host, target.port, **tls, **create_kwargs
            )
        via = parse_proxy(address)
        # ssl_* options are for the server's TLS; the others for the proxy.
        server_tls = {k: v for k, v in create_kwargs.items() if k.startswith("ssl_")}
        to_proxy = {k: v for k, v in create_kwargs.items() if not k.startswith("ssl_")}
        if via.scheme.startswith("socks"):
            tunnel = await open_socks_tunnel(via, target, local_addr=to_proxy.get("local_addr"))
            try:
                return await loop.create_connection(factory, sock=tunnel, **tls, **server_tls)
            except BaseException:
                tunnel.close()
                raise
        transport = await open_http_tunnel(
            via,
            target,
            user_agent_header=user_agent,
            ssl=proxy_ssl,
            server_hostname=proxy_server_hostname,
            **proxy_tls,
            **to_proxy,
        )
        try:
            connection = factory()
            transport.set_protocol(connection)
            if context is not None:
                # TLS to the server inside the tunnel (TLS in TLS through an
                # https:// proxy, which asyncio supports from Python 3.11).
                secured = await loop.start_tls(
                    transport,
                    connection,
                    context,
                    server_hostname=tls["server_hostname"],
                    **server_tls,
                )
                assert secured is not None
                transport = secured
                connection.connection_made(transport)
            else:
                connection.connection_made(transport)
                transport.resume_reading()
        except BaseException:
            transport.abort()
            raise
        return transport, connection

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
    # A Unix socket never goes through a proxy (as in websockets): the proxy
    # options are accepted and ignored.
    for key in ("proxy", *_PROXY_OPTIONS):
        kwargs.pop(key, None)

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


# connect()'s options for the connection to a proxy.
_PROXY_OPTIONS = (
    "proxy_ssl",
    "proxy_server_hostname",
    "proxy_ssl_handshake_timeout",
    "proxy_ssl_shutdown_timeout",
)

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
