"""The client side of the opening handshake, without I/O (RFC 6455 section 4.1)."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from .auth import build_authorization_basic
from .connection import CLIENT, Protocol
from .deflate import DEFAULT_DEFLATE, EXTENSION_NAME, Deflate
from .handshake import accept_key, generate_key
from .headers import (
    Headers,
    HeadersLike,
    MultipleValuesError,
    build_extension_list,
    build_token_list,
    parse_extension_list,
    parse_subprotocol_list,
    parse_token_list,
    parse_upgrade_list,
)
from .http11 import Request, Response, ResponseParser
from .reader import Arena
from .state import CONNECTING, transition
from .state import Event as Transition
from .uri import WebSocketURI

__all__ = ["ClientProtocol"]


class ClientProtocol(Protocol):
    """The client side of a connection, starting with the opening handshake.

    Build the request with :meth:`connect` and write :meth:`send_request`; feed
    the answer to :meth:`receive_response` (and :meth:`receive_response_eof`);
    then :meth:`process_response` opens the connection or raises. Bytes the
    server sent right after its response are in :attr:`rest`.

    Args:
        uri: Where to connect.
        origin: The ``Origin`` header, if any.
        extra_headers: More request headers.
        subprotocols: The subprotocols to offer, by preference.
        compression: permessage-deflate settings, or ``None`` to disable it.
        user_agent_header: The ``User-Agent`` header; ``None`` omits it.
        max_size: See :class:`Protocol`.
        read_limit: See :class:`Protocol`.
        arena: See :class:`Protocol`.

    Attributes:
        request: The request, once built.
        response: The response, once received.
        subprotocol: The negotiated subprotocol, if any.
        handshake_exc: Why the handshake failed, if it did.
        rest: Bytes received after the response.
    """

    __slots__ = (
        "_key",
        "_parser",
        "compression",
        "extra_headers",
        "handshake_exc",
        "origin",
        "request",
        "response",
        "rest",
        "subprotocol",
        "subprotocols",
        "uri",
        "user_agent_header",
    )

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: str | None = None,
        extra_headers: HeadersLike | None = None,
        subprotocols: Sequence[str] | None = None,
        compression: Deflate | None = DEFAULT_DEFLATE,
        user_agent_header: str | None = None,
        max_size: int | None = 2**20,
        read_limit: int = 2**16,
        arena: Arena | None = None,
    ) -> None:
        super().__init__(
            CLIENT,
            state=CONNECTING,
            max_size=max_size,
            read_limit=read_limit,
            arena=arena,
        )
        self.uri = uri
        self.origin = origin
        self.extra_headers = extra_headers
        self.subprotocols = subprotocols
        self.compression = compression
        self.user_agent_header = user_agent_header
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.handshake_exc: Exception | None = None
        self.rest = b""
        self._key = generate_key()
        self._parser: ResponseParser | None = ResponseParser()

    def connect(self) -> Request:
        """Build the opening request (RFC 6455 4.1)."""
        headers = Headers()
        headers["Host"] = self.uri.host_header
        if self.uri.user_info is not None:
            # RFC 7617 2: user information in the URI becomes Basic credentials.
            headers["Authorization"] = build_authorization_basic(*self.uri.user_info)
        if self.origin is not None:
            headers["Origin"] = self.origin
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Key"] = self._key
        headers["Sec-WebSocket-Version"] = "13"
        if self.compression is not None:
            headers["Sec-WebSocket-Extensions"] = build_extension_list([self.compression.offer()])
        if self.subprotocols:
            headers["Sec-WebSocket-Protocol"] = build_token_list(self.subprotocols)
        if self.extra_headers is not None:
            headers.update(self.extra_headers)
        if self.user_agent_header is not None and "User-Agent" not in headers:
            headers["User-Agent"] = self.user_agent_header
        return Request(self.uri.path, headers)

    def send_request(self, request: Request) -> bytes:
        """Return the request as bytes, ready to write."""
        self.request = request
        return request.serialize()

    def receive_response(self, data: bytes) -> Response | None:
        """Add bytes of the server's response; return it once complete.

        Raises:
            InvalidMessage: If the response is malformed or too large.
        """
        assert self._parser is not None, "response already received"
        response = self._parser.feed(data)
        if response is not None:
            self.response = response
            self.rest = self._parser.rest
            self._parser = None
        return response

    def receive_response_eof(self) -> Response:
        """Note that the server closed the connection; return its response.

        Raises:
            InvalidMessage: If the response is incomplete.
        """
        assert self._parser is not None, "response already received"
        self.response = self._parser.feed_eof()
        self._parser = None
        return self.response

    def process_response(self, response: Response) -> None:
        """Check the server's response; open the connection if it is valid.

        Raises:
            InvalidHandshake: If the server refused or answered wrongly.
        """
        try:
            self._check(response)
        except InvalidHandshake as exc:
            self.handshake_exc = exc
            self.state = transition(self.state, Transition.REJECT)
            self._reading = False
            raise
        self.state = transition(self.state, Transition.ACCEPT)

    def _check(self, response: Response) -> None:
        # RFC 6455 4.1: what the client checks in the server's response.
        if response.status_code != 101:
            raise InvalidStatus(response)
        headers = response.headers
        upgrade = [u.lower() for v in headers.get_all("Upgrade") for u in parse_upgrade_list(v)]
        if upgrade != ["websocket"]:
            raise InvalidUpgrade("Upgrade", ", ".join(headers.get_all("Upgrade")) or None)
        connection = [
            c.lower()
            for v in headers.get_all("Connection")
            for c in parse_token_list(v, "Connection")
        ]
        if "upgrade" not in connection:
            raise InvalidUpgrade("Connection", ", ".join(headers.get_all("Connection")) or None)
        try:
            accept = headers["Sec-WebSocket-Accept"]
        except KeyError:
            raise InvalidHeader("Sec-WebSocket-Accept") from None
        except MultipleValuesError:
            raise InvalidHeader("Sec-WebSocket-Accept", "multiple values") from None
        if accept != accept_key(self._key):
            raise InvalidHeaderValue("Sec-WebSocket-Accept", accept)
        self._check_extensions(headers)
        self._check_subprotocol(headers)

    def _check_extensions(self, headers: Headers) -> None:
        accepted = [
            e for v in headers.get_all("Sec-WebSocket-Extensions") for e in parse_extension_list(v)
        ]
        if not accepted:
            return
        # RFC 6455 9.1: the server may only accept extensions the client offered.
        if self.compression is None:
            raise NegotiationError("server accepted an extension that was not offered")
        if len(accepted) > 1 or accepted[0][0] != EXTENSION_NAME:
            names = ", ".join(name for name, _ in accepted)
            raise NegotiationError(f"unsupported extensions: {names}")
        self.deflate = self.compression.accept_response(accepted[0][1])

    def _check_subprotocol(self, headers: Headers) -> None:
        values = [
            p for v in headers.get_all("Sec-WebSocket-Protocol") for p in parse_subprotocol_list(v)
        ]
        if not values:
            return
        # RFC 6455 4.1: the server selects one of the offered subprotocols.
        if len(values) > 1:
            raise InvalidHeader("Sec-WebSocket-Protocol", "multiple values")
        if not self.subprotocols or values[0] not in self.subprotocols:
            raise NegotiationError(f"unsupported subprotocol: {values[0]}")
        self.subprotocol = values[0]
