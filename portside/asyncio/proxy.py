"""Reaching a server through a proxy on asyncio: HTTP ``CONNECT`` and SOCKS.

:func:`open_http_tunnel` opens a TCP (or TLS, for an ``https://`` proxy)
connection to an HTTP proxy and asks it, with :class:`~portside.protocol.proxy.
ProxyHandshake`, for a tunnel to the server; the client then speaks TLS (for
``wss://``) and WebSocket through the tunnel. :func:`open_socks_tunnel` does the
same through a SOCKS4 or SOCKS5 proxy with python-socks' asyncio API
(``pip install 'portside[socks]'``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

from ..exceptions import InvalidProxyMessage, InvalidProxyStatus, ProxyError
from ..protocol.proxy import Proxy, ProxyHandshake
from ..protocol.uri import WebSocketURI

__all__ = ["open_http_tunnel", "open_socks_tunnel"]


class _TunnelOpener(asyncio.Protocol):
    """Sends ``CONNECT`` and reads the proxy's answer; then steps aside."""

    def __init__(self, handshake: ProxyHandshake, loop: asyncio.AbstractEventLoop) -> None:
        self.handshake = handshake
        self.opened: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.handshake.connect_request())

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            return  # pragma: no cover - reading is paused once it is done
        try:
            response = self.handshake.receive_data(data)
        except (InvalidProxyMessage, InvalidProxyStatus) as exc:
            self.opened.set_exception(exc)
            return
        if response is None:
            return
        assert self.transport is not None
        # Whatever comes next belongs to the connection that takes over.
        self.transport.pause_reading()
        if self.handshake.rest:
            # The server cannot speak before the client: a proxy that sends
            # more after its answer is broken.
            self.opened.set_exception(
                InvalidProxyMessage("proxy sent data after its answer to CONNECT")
            )
            return
        self.opened.set_result(None)

    def eof_received(self) -> bool:
        if not self.opened.done():
            try:
                self.handshake.receive_eof()
            except (InvalidProxyMessage, InvalidProxyStatus) as exc:
                self.opened.set_exception(exc)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            error = InvalidProxyMessage("proxy closed the connection before answering CONNECT")
            error.__cause__ = exc if exc is not None else EOFError("connection lost")
            self.opened.set_exception(error)


async def open_http_tunnel(
    proxy: Proxy,
    target: WebSocketURI,
    *,
    user_agent_header: str | None,
    ssl: Any = None,
    server_hostname: str | None = None,
    **kwargs: Any,
) -> asyncio.Transport:
    """Open a tunnel to ``target`` through an HTTP proxy.

    Args:
        proxy: An ``http://`` or ``https://`` proxy.
        target: The WebSocket server.
        user_agent_header: The ``User-Agent`` header of the ``CONNECT`` request.
        ssl: For an ``https://`` proxy, the :class:`ssl.SSLContext` to check it
            with (``None``: the default context).
        server_hostname: The name to check the proxy's certificate against.
        **kwargs: More arguments for :meth:`asyncio.loop.create_connection`.

    Returns:
        The transport to the proxy, its reading paused, once the proxy answered
        2xx: give it a protocol with ``set_protocol()`` (or ``start_tls()``).

    Raises:
        OSError: If the proxy cannot be reached.
        InvalidProxyStatus: If the proxy refused (407: credentials needed).
        InvalidProxyMessage: If the proxy's answer is not HTTP.
    """
    loop = asyncio.get_running_loop()
    if proxy.scheme == "https":
        if ssl is None:
            import ssl as ssl_module

            ssl = ssl_module.create_default_context()
        kwargs["ssl"] = ssl
        kwargs["server_hostname"] = server_hostname or proxy.host
    elif ssl is not None:
        raise ValueError("proxy_ssl was given for an http:// proxy")
    handshake = ProxyHandshake(proxy, target, user_agent_header)
    transport, opener = await loop.create_connection(
        lambda: _TunnelOpener(handshake, loop), proxy.host, proxy.port, **kwargs
    )
    try:
        await opener.opened
    except BaseException:
        transport.abort()
        raise
    return transport


async def open_socks_tunnel(
    proxy: Proxy, target: WebSocketURI, *, local_addr: Any = None
) -> socket.socket:
    """Open a tunnel to ``target`` through a SOCKS proxy; return the connected socket.

    ``socks5h`` and ``socks4a`` let the proxy resolve the server's name;
    ``socks5`` and ``socks4`` resolve it here.

    Raises:
        ImportError: If python-socks is not installed.
        OSError: If the proxy cannot be reached or cannot reach the server
            (python-socks' ``ProxyConnectionError`` is an :class:`OSError`).
        TimeoutError: If the proxy does not answer (``ProxyTimeoutError``).
        ProxyError: If the proxy refused (a SOCKS error reply, failed
            authentication) or broke the SOCKS protocol.
    """
    try:
        from python_socks import ProxyType
        from python_socks.async_.asyncio import Proxy as SocksProxy
    except ImportError as exc:
        raise ImportError(
            f"connecting through a {proxy.scheme}:// proxy requires python-socks: "
            "pip install 'portside[socks]'"
        ) from exc
    proxy_type = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    socks = SocksProxy(
        proxy_type,
        proxy.host,
        proxy.port,
        proxy.username,
        proxy.password,
        rdns=proxy.scheme in ("socks5h", "socks4a"),
    )
    try:
        return await socks.connect(target.host, target.port, local_addr=local_addr)
    except (OSError, TimeoutError):
        raise
    except Exception as exc:
        # python-socks' ProxyError (a refusal) and protocol errors.
        raise ProxyError(f"SOCKS proxy failed: {exc}") from exc
