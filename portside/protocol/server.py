"""The server side of the opening handshake, without I/O (RFC 6455 section 4.2)."""

from __future__ import annotations

import http
import re
from collections.abc import Callable, Sequence
from typing import Union

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidMethod,
    InvalidOrigin,
    InvalidProtocol,
    InvalidUpgrade,
    InvalidVersion,
)
from .connection import SERVER, Protocol
from .deflate import DEFAULT_DEFLATE, EXTENSION_NAME, Deflate, PerMessageDeflate
from .handshake import accept_key, check_key
from .headers import (
    ExtensionParameter,
    Headers,
    build_extension_list,
    parse_extension_list,
    parse_subprotocol_list,
    parse_token_list,
    parse_upgrade_list,
)
from .http11 import Request, RequestParser, Response
from .reader import Arena
from .state import CONNECTING, transition
from .state import Event as Transition

__all__ = ["ServerProtocol", "Origin", "SubprotocolSelector", "HOOK_FAILED", "SHUTTING_DOWN"]

#: The body of the 503 response of a server that is shutting down.
SHUTTING_DOWN = "Server is shutting down.\n"
#: The body of the 500 response when the application's ``process_request``,
#: ``process_response`` or ``select_subprotocol`` failed.
HOOK_FAILED = "Failed to open a WebSocket connection.\nSee server log for more information.\n"

#: An allowed origin: an exact string, a compiled pattern, or ``None`` to allow
#: requests without an ``Origin`` header.
Origin = Union[str, "re.Pattern[str]", None]
#: Picks a subprotocol from the client's offers, or returns ``None``.
SubprotocolSelector = Callable[[Sequence[str]], Union[str, None]]


def _single(headers: Headers, name: str) -> str:
    values = headers.get_all(name)
    if len(values) == 1:
        return values[0]
    raise InvalidHeader(name, "multiple values" if values else None)


class ServerProtocol(Protocol):
    """The server side of a connection, starting with the opening handshake.

    Feed the request with :meth:`receive_request`, build the answer with
    :meth:`accept` (or :meth:`reject`), then :meth:`send_response`. After a
    ``101`` response the connection is ``OPEN``; bytes the client sent right
    after its request are in :attr:`rest`.

    Args:
        origins: The allowed values of the ``Origin`` header; ``None`` allows any.
        subprotocols: The subprotocols the server supports, by preference.
        select_subprotocol: Overrides how the subprotocol is chosen.
        compression: permessage-deflate settings, or ``None`` to disable it.
        server_header: The ``Server`` header of responses; ``None`` omits it.
        max_size: See :class:`Protocol`.
        read_limit: See :class:`Protocol`.
        arena: See :class:`Protocol`.

    Attributes:
        request: The request, once received.
        response: The response, once built.
        subprotocol: The negotiated subprotocol, if any.
        handshake_exc: Why the handshake failed, if it did.
        rest: Bytes received after the request.
    """

    __slots__ = (
        "_codec",
        "_parser",
        "compression",
        "handshake_exc",
        "origins",
        "request",
        "response",
        "rest",
        "select_subprotocol",
        "server_header",
        "subprotocol",
        "subprotocols",
    )

    def __init__(
        self,
        *,
        origins: Sequence[Origin] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SubprotocolSelector | None = None,
        compression: Deflate | None = DEFAULT_DEFLATE,
        server_header: str | None = None,
        max_size: int | None = 2**20,
        read_limit: int = 2**16,
        arena: Arena | None = None,
    ) -> None:
        super().__init__(
            SERVER,
            state=CONNECTING,
            max_size=max_size,
            read_limit=read_limit,
            arena=arena,
        )
        self.origins = origins
        self.subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.compression = compression
        self.server_header = server_header
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.handshake_exc: Exception | None = None
        self.rest = b""
        self._parser: RequestParser | None = RequestParser()
        self._codec: PerMessageDeflate | None = None

    def receive_request(self, data: bytes) -> Request | None:
        """Add bytes of the opening request; return it once complete.

        Raises:
            InvalidMessage: If the request is malformed or too large; answer with
                :meth:`reject` and the exception's ``status``.
        """
        assert self._parser is not None, "request already received"
        try:
            request = self._parser.feed(data)
        except InvalidMessage as exc:
            self.handshake_exc = exc
            self._parser = None
            raise
        if request is not None:
            self.request = request
            self.rest = self._parser.rest
            self._parser = None
        return request

    def accept(self, request: Request) -> Response:
        """Validate the request; return a ``101`` response or an error response.

        On error, :attr:`handshake_exc` says why and the response carries the
        matching HTTP status.
        """
        try:
            key, extensions, subprotocol = self._check(request)
        except InvalidHandshake as exc:
            self.handshake_exc = exc
            response = self.reject(exc.status, f"Failed to open a WebSocket connection: {exc}.\n")
            if isinstance(exc, InvalidVersion):
                # RFC 6455 4.4: tell the client which version the server speaks.
                response.headers["Sec-WebSocket-Version"] = "13"
            if isinstance(exc, InvalidUpgrade):
                response.headers["Upgrade"] = "websocket"
            if isinstance(exc, InvalidMethod):
                # RFC 9110 15.5.6: a 405 response lists the methods allowed.
                response.headers["Allow"] = "GET"
            return response
        items = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(key)),
        ]
        if extensions is not None:
            items.append(("Sec-WebSocket-Extensions", extensions))
        if subprotocol is not None:
            items.append(("Sec-WebSocket-Protocol", subprotocol))
        if self.server_header is not None:
            items.append(("Server", self.server_header))
        return Response(101, "Switching Protocols", Headers(items))

    def reject(self, status: int, text: str) -> Response:
        """Return an HTTP error response with a plain-text body.

        The server closes the connection after sending it.
        """
        status = http.HTTPStatus(status)
        body = text.encode()
        headers = Headers()
        if self.server_header is not None:
            headers["Server"] = self.server_header
        headers["Connection"] = "close"
        headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = str(len(body))
        return Response(status.value, status.phrase, headers, body)

    def send_response(self, response: Response) -> bytes:
        """Return the response as bytes; a ``101`` opens the connection.

        Any other response to an HTTP/1.0 request is sent as such a client can
        read it (see :meth:`Response.for_http10`); :attr:`response` is what was sent.
        """
        if response.status_code == 101:
            self.response = response
            self.state = transition(self.state, Transition.ACCEPT)
            self.deflate = self._codec
        else:
            request = self.request
            if request is not None and request.http_version == "HTTP/1.0":
                response = response.for_http10()
            self.response = response
            self.state = transition(self.state, Transition.REJECT)
            self._reading = False
        return response.serialize()

    def _check(self, request: Request) -> tuple[str, str | None, str | None]:
        # RFC 6455 4.2.1 lists what the server checks, in this order.
        if request.method != "GET":
            raise InvalidMethod(request.method)
        if request.http_version != "HTTP/1.1":
            # RFC 6455 4.1: "the HTTP version MUST be at least 1.1" (and RFC
            # 9110 7.8: a server ignores Upgrade in an HTTP/1.0 request).
            raise InvalidProtocol(request.http_version)
        headers = request.headers
        _single(headers, "Host")
        values = headers.get_all("Upgrade")
        # The common case, "Upgrade: websocket", skips the list parser.
        if not (len(values) == 1 and values[0].lower() == "websocket"):
            upgrade = [u.lower() for v in values for u in parse_upgrade_list(v)]
            if "websocket" not in upgrade:
                raise InvalidUpgrade("Upgrade", ", ".join(values) or None)
        values = headers.get_all("Connection")
        if not (len(values) == 1 and values[0].lower() == "upgrade"):
            connection = [c.lower() for v in values for c in parse_token_list(v, "Connection")]
            if "upgrade" not in connection:
                raise InvalidUpgrade("Connection", ", ".join(values) or None)
        key = _single(headers, "Sec-WebSocket-Key")
        if not check_key(key):
            raise InvalidHeaderValue("Sec-WebSocket-Key", key)
        version = _single(headers, "Sec-WebSocket-Version")
        if version != "13":
            raise InvalidVersion("Sec-WebSocket-Version", version)
        if self.origins is not None:
            self._check_origin(headers)
        extensions = self._negotiate_extensions(headers)
        subprotocol = self._negotiate_subprotocol(headers)
        return key, extensions, subprotocol

    def _check_origin(self, headers: Headers) -> None:
        assert self.origins is not None
        origins = headers.get_all("Origin")
        if len(origins) > 1:
            raise InvalidHeader("Origin", "multiple values")
        origin = origins[0] if origins else None
        for allowed in self.origins:
            if allowed is None or isinstance(allowed, str):
                if origin == allowed:
                    return
            elif origin is not None and allowed.fullmatch(origin):
                return
        raise InvalidOrigin(origin)

    def _negotiate_extensions(self, headers: Headers) -> str | None:
        if self.compression is None:
            return None
        offers: list[list[ExtensionParameter]] = []
        for value in headers.get_all("Sec-WebSocket-Extensions"):
            for name, params in parse_extension_list(value):
                if name == EXTENSION_NAME:
                    offers.append(params)
        accepted = self.compression.accept_offers(offers)
        if accepted is None:
            return None
        response, self._codec = accepted
        return build_extension_list([response])

    def _negotiate_subprotocol(self, headers: Headers) -> str | None:
        values = headers.get_all("Sec-WebSocket-Protocol")
        if not values and self.select_subprotocol is None:
            return None  # self.subprotocol stays None
        offered = [p for v in values for p in parse_subprotocol_list(v)]
        if self.select_subprotocol is not None:
            chosen = self.select_subprotocol(offered)
            if chosen is not None and chosen not in offered:
                raise InvalidHeaderValue("Sec-WebSocket-Protocol", f"{chosen} was not offered")
        elif self.subprotocols and offered:
            # RFC 6455 4.2.2: pick one the client offered, in the server's order;
            # when none fits, answer without the header and let the client decide.
            chosen = next((p for p in self.subprotocols if p in offered), None)
        else:
            chosen = None
        self.subprotocol = chosen
        return chosen
