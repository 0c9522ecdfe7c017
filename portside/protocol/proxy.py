"""Client proxies without I/O: which proxy applies to a URI, and HTTP ``CONNECT``.

:func:`get_proxy` picks the proxy for a WebSocket URI from the environment
variables that curl, urllib and websockets read (``wss_proxy``, ``ws_proxy``,
``socks_proxy``, ``https_proxy``, ``http_proxy`` and ``no_proxy``, in lower or
upper case); :func:`parse_proxy` validates a proxy address;
:class:`ProxyHandshake` builds the ``CONNECT`` request for an HTTP proxy and
reads the proxy's answer (RFC 9110 section 9.3.6). The I/O layers open the
TCP connection, write and read; SOCKS proxies are python-socks' business.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from ..exceptions import InvalidMessage, InvalidProxy, InvalidProxyMessage, InvalidProxyStatus
from .auth import build_authorization_basic
from .headers import Headers
from .http11 import Response, ResponseParser
from .uri import WebSocketURI

__all__ = [
    "PROXY_SCHEMES",
    "Proxy",
    "ProxyHandshake",
    "get_proxy",
    "parse_proxy",
    "proxies_from_environment",
    "proxy_bypassed",
]

#: The proxy schemes portside supports: SOCKS through python-socks, HTTP CONNECT
#: itself (``https`` is TLS between the client and the proxy).
PROXY_SCHEMES = ("socks5h", "socks5", "socks4a", "socks4", "https", "http")


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy address.

    Attributes:
        scheme: One of :data:`PROXY_SCHEMES`.
        host: The host name (lower case, IDNA-encoded) or IP address.
        port: The port, 80 or 443 by default for ``http`` and ``https``.
        username: The user name from the address, for proxy authentication.
        password: The password that goes with ``username``.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def user_info(self) -> tuple[str, str] | None:
        """``(username, password)`` when the address carries credentials."""
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)


def parse_proxy(proxy: str) -> Proxy:
    """Parse and validate a proxy address such as ``http://user:pw@host:3128``.

    Raises:
        InvalidProxy: If the scheme is not supported, the host is missing, the
            address has a path, query or fragment, or a user name comes without
            a password.
    """
    try:
        parsed = urllib.parse.urlsplit(proxy)
        port = parsed.port
    except ValueError as exc:
        raise InvalidProxy(proxy, str(exc)) from None
    if parsed.scheme not in PROXY_SCHEMES:
        raise InvalidProxy(proxy, f"scheme {parsed.scheme or '(none)'} isn't supported")
    if not parsed.hostname:
        raise InvalidProxy(proxy, "hostname isn't provided")
    if parsed.path not in ("", "/"):
        raise InvalidProxy(proxy, "path is meaningless")
    if parsed.query:
        raise InvalidProxy(proxy, "query is meaningless")
    if parsed.fragment:
        raise InvalidProxy(proxy, "fragment is meaningless")
    host = parsed.hostname
    if not host.isascii():
        # An IRI: the host goes on the wire IDNA-encoded.
        try:
            host = host.encode("idna").decode()
        except UnicodeError as exc:
            raise InvalidProxy(proxy, f"invalid host name: {exc}") from None
    username = password = None
    if parsed.username is not None:
        if parsed.password is None:
            # RFC 7617 2: Basic credentials are a user-id and a password.
            raise InvalidProxy(proxy, "username provided without password")
        try:
            username = urllib.parse.unquote(parsed.username, errors="strict")
            password = urllib.parse.unquote(parsed.password, errors="strict")
        except UnicodeDecodeError:
            raise InvalidProxy(proxy, "credentials aren't UTF-8 once unquoted") from None
    if port is None:
        port = 443 if parsed.scheme == "https" else 80 if parsed.scheme == "http" else 1080
    return Proxy(parsed.scheme, host, port, username, password)


def proxies_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Read ``<scheme>_proxy`` variables, as :func:`urllib.request.getproxies` does.

    Lower-case names win over upper-case ones; an empty lower-case variable
    cancels the upper-case one. When ``REQUEST_METHOD`` is set (a CGI program),
    the upper-case ``HTTP_PROXY`` is ignored: a client's ``Proxy:`` request header
    could have set it (CVE-2016-1000110).

    Args:
        environ: The variables; :data:`os.environ` by default.

    Returns:
        Proxy addresses by scheme (``"https"``, ``"no"``, ...).
    """
    if environ is None:
        environ = os.environ
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        lower = name.lower()
        if value and lower.endswith("_proxy"):
            proxies[lower[:-6]] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    return proxies


def proxy_bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Tell whether ``no_proxy`` exempts ``host:port`` from the proxy.

    ``no_proxy`` is a comma-separated list of host names or domain suffixes
    (a leading dot is ignored), each optionally with ``:port``; ``*`` exempts
    every host. This is urllib's rule, which websockets applies.
    """
    no_proxy = no_proxy.strip()
    if no_proxy == "*":
        return True
    host = host.lower()
    host_port = f"{host}:{port}"
    for entry in no_proxy.split(","):
        name = entry.strip().lstrip(".").lower()
        if not name:
            continue
        if name in (host, host_port):
            return True
        suffix = "." + name
        if host.endswith(suffix) or host_port.endswith(suffix):
            return True
    return False


def get_proxy(uri: WebSocketURI, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the address of the proxy to reach ``uri`` through, or ``None``.

    Reads the environment as websockets does: ``no_proxy`` first; then, for a
    ``wss://`` URI, ``wss_proxy``, ``socks_proxy``, ``https_proxy``; for ``ws://``,
    ``ws_proxy``, ``socks_proxy``, ``https_proxy``, ``http_proxy``: the first one
    set wins (RFC 6455 section 4.1 lets a client use a SOCKS or HTTPS proxy; a
    ``ws_proxy``/``wss_proxy`` is the most specific). A ``socks_proxy`` written
    as ``http://host:port`` means ``socks5h://host:port``. ``all_proxy`` is not
    read, as in websockets.

    Args:
        uri: Where the client connects.
        environ: The variables; :data:`os.environ` by default.
    """
    proxies = proxies_from_environment(environ)
    no_proxy = proxies.get("no")
    if no_proxy is not None and proxy_bypassed(uri.host, uri.port, no_proxy):
        return None
    schemes = ("wss", "socks", "https") if uri.secure else ("ws", "socks", "https", "http")
    for scheme in schemes:
        proxy = proxies.get(scheme)
        if proxy is not None:
            if scheme == "socks" and proxy.startswith("http://"):
                proxy = "socks5h://" + proxy[7:]
            return proxy
    return None


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyHandshake:
    """The ``CONNECT`` exchange that opens a tunnel through an HTTP proxy.

    Write :meth:`connect_request` to the proxy; feed its answer to
    :meth:`receive_data` (and :meth:`receive_eof` if the proxy hangs up) until it
    returns the response. Then the connection is a tunnel to ``uri``: start TLS
    for ``wss://``, then the WebSocket handshake. Bytes that came after the
    response are in :attr:`rest`.

    Args:
        proxy: An ``http`` or ``https`` proxy.
        uri: Where the tunnel leads.
        user_agent_header: The ``User-Agent`` header; ``None`` omits it.

    Attributes:
        response: The proxy's 2xx response, once received.
        rest: Bytes received after the response: the first bytes of the tunnel.
    """

    def __init__(
        self, proxy: Proxy, uri: WebSocketURI, user_agent_header: str | None = None
    ) -> None:
        if not proxy.scheme.startswith("http"):
            raise ValueError(f"{proxy.scheme} proxies do not use HTTP CONNECT")
        self.proxy = proxy
        self.uri = uri
        self.user_agent_header = user_agent_header
        self.response: Response | None = None
        self.rest = b""
        self._parser = ResponseParser(tunnel=True)

    def connect_request(self) -> bytes:
        """Return the ``CONNECT`` request, ready to write."""
        # RFC 9110 9.3.6: the request target is the authority, port included;
        # RFC 9112 3.2: Host is the same authority.
        authority = _authority(self.uri.host, self.uri.port)
        headers = Headers()
        headers["Host"] = authority
        if self.user_agent_header is not None:
            headers["User-Agent"] = self.user_agent_header
        user_info = self.proxy.user_info
        if user_info is not None:
            # RFC 9110 11.7.2: credentials for the proxy go in Proxy-Authorization.
            headers["Proxy-Authorization"] = build_authorization_basic(*user_info)
        return f"CONNECT {authority} HTTP/1.1\r\n{headers}".encode()

    def receive_data(self, data: bytes) -> Response | None:
        """Add bytes from the proxy; return its response once complete.

        Raises:
            InvalidProxyMessage: If the answer is not valid HTTP.
            InvalidProxyStatus: If the proxy refused (any status but 2xx); 407
                means it wants (other) credentials.
        """
        try:
            response = self._parser.feed(data)
        except InvalidMessage as exc:
            raise InvalidProxyMessage(
                f"did not receive a valid HTTP response from proxy: {exc}"
            ) from exc
        if response is None:
            return None
        return self._check(response)

    def receive_eof(self) -> Response:
        """Note that the proxy closed the connection; return or reject its answer.

        Raises:
            InvalidProxyMessage: If the answer was incomplete.
            InvalidProxyStatus: If the proxy refused.
        """
        try:
            response = self._parser.feed_eof()
        except InvalidMessage as exc:
            raise InvalidProxyMessage("proxy closed the connection before answering CONNECT") from (
                exc.__cause__ or exc
            )
        # A 2xx response ends with its head, so one that needed EOF is an error.
        raise InvalidProxyStatus(response)

    def _check(self, response: Response) -> Response:
        if not 200 <= response.status_code < 300:
            raise InvalidProxyStatus(response)
        self.response = response
        self.rest = self._parser.rest
        return response
