"""Reaching a server through a proxy on threads: HTTP ``CONNECT`` and SOCKS.

:func:`open_http_tunnel` connects to an HTTP proxy (over TLS for an
``https://`` proxy) and asks it, with :class:`~portside.protocol.proxy.
ProxyHandshake`, for a tunnel to the server; :func:`open_socks_tunnel` does the
same through a SOCKS4 or SOCKS5 proxy with python-socks' synchronous API
(``pip install 'portside[socks]'``). The client then speaks TLS (for
``wss://``) and WebSocket through the tunnel.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import threading
from typing import Any

from ..exceptions import InvalidProxyMessage
from ..protocol.proxy import Proxy, ProxyHandshake
from ..protocol.uri import WebSocketURI
from ..socks import SOCKS_SYNC, socks_errors, socks_proxy
from .transport import TLSTransport, Transport, remaining

__all__ = ["open_http_tunnel", "open_socks_tunnel"]


def open_http_tunnel(
    proxy: Proxy,
    target: WebSocketURI,
    deadline: float | None,
    lock: threading.Lock,
    *,
    user_agent_header: str | None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    source_address: Any = None,
) -> Transport:
    """Open a tunnel to ``target`` through an HTTP proxy.

    Args:
        proxy: An ``http://`` or ``https://`` proxy.
        target: The WebSocket server.
        deadline: When to give up (:func:`time.monotonic`), or ``None``.
        lock: The connection's lock, for a TLS transport.
        user_agent_header: The ``User-Agent`` header of the ``CONNECT`` request.
        ssl: For an ``https://`` proxy, the context to check it with
            (``None``: the default context).
        server_hostname: The name to check the proxy's certificate against.
        source_address: The local address to connect from.

    Returns:
        The transport to the proxy, plain or TLS, once the proxy answered 2xx:
        from then on, a tunnel to the server.

    Raises:
        ValueError: If ``ssl`` is given for an ``http://`` proxy.
        OSError: If the proxy cannot be reached.
        TimeoutError: If the proxy did not answer in time.
        InvalidProxyStatus: If the proxy refused (407: credentials needed).
        InvalidProxyMessage: If the proxy's answer is not HTTP.
    """
    if proxy.scheme != "https" and ssl is not None:
        raise ValueError("proxy_ssl was given for an http:// proxy")
    sock = socket.create_connection(
        (proxy.host, proxy.port), timeout=remaining(deadline), source_address=source_address
    )
    sock.settimeout(None)
    transport: Transport
    try:
        if proxy.scheme == "https":
            tls = TLSTransport(
                sock,
                ssl if ssl is not None else ssl_module.create_default_context(),
                server_side=False,
                server_hostname=server_hostname or proxy.host,
                lock=lock,
            )
            transport = tls
            tls.handshake(remaining(deadline))
        else:
            transport = Transport(sock, lock)
        handshake = ProxyHandshake(proxy, target, user_agent_header)
        with lock:
            data = transport.encode([handshake.connect_request()])
        transport.send(data, remaining(deadline))
        buffer = memoryview(bytearray(4096))
        response = None
        while response is None:
            try:
                count = transport.recv_into(buffer, remaining(deadline))
            except TimeoutError:
                raise TimeoutError("timed out while connecting to the proxy") from None
            if count:
                response = handshake.receive_data(bytes(buffer[:count]))
            else:
                handshake.receive_eof()  # raises
        if handshake.rest:
            # The server cannot speak before the client: a proxy that sends
            # more after its answer is broken.
            raise InvalidProxyMessage("proxy sent data after its answer to CONNECT")
    except BaseException:
        sock.close()
        raise
    return transport


def open_socks_tunnel(
    proxy: Proxy, target: WebSocketURI, deadline: float | None, *, source_address: Any = None
) -> socket.socket:
    """Open a tunnel to ``target`` through a SOCKS proxy; return the connected socket.

    ``socks5h`` and ``socks4a`` let the proxy resolve the server's name;
    ``socks5`` and ``socks4`` resolve it here.

    Raises:
        ImportError: If python-socks is not installed.
        OSError: If the proxy cannot be reached or cannot reach the server.
        TimeoutError: If the proxy does not answer in time.
        ProxyError: If the proxy refused (a SOCKS error reply, failed
            authentication) or broke the SOCKS protocol.
    """
    socks = socks_proxy(proxy, SOCKS_SYNC)
    with socks_errors():
        sock: socket.socket = socks.connect(
            target.host, target.port, timeout=remaining(deadline), local_addr=source_address
        )
    sock.settimeout(None)
    return sock
