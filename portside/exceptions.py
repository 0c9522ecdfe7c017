"""Exceptions raised by portside.

Every exception portside raises on purpose derives from :class:`WebSocketException`::

    WebSocketException
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK
    │   └── ConnectionClosedError
    ├── InvalidURI                      (also a ValueError)
    ├── InvalidProxy                    (also a ValueError)
    ├── InvalidHandshake
    │   ├── SecurityError               a limit that protects the server was hit
    │   │   ├── RequestLineTooLong      (the cause of an InvalidMessage)
    │   │   ├── StatusLineTooLong       (the cause of an InvalidMessage)
    │   │   ├── HeaderLineTooLong       (the cause of an InvalidMessage)
    │   │   └── TooManyHeaders          (the cause of an InvalidMessage)
    │   ├── ProxyError                  the proxy refused or broke the tunnel
    │   │   ├── InvalidProxyMessage     malformed HTTP from the proxy
    │   │   └── InvalidProxyStatus      the proxy answered CONNECT with no 2xx
    │   ├── InvalidMessage              malformed HTTP
    │   ├── InvalidMethod               a request method other than GET
    │   ├── InvalidProtocol             an HTTP version other than HTTP/1.1
    │   ├── InvalidHeader               a header is missing or wrong
    │   │   ├── InvalidHeaderFormat
    │   │   ├── InvalidHeaderValue
    │   │   ├── InvalidOrigin
    │   │   ├── InvalidUpgrade
    │   │   └── InvalidVersion
    │   ├── InvalidStatus               the server refused the upgrade
    │   └── NegotiationError            extensions or subprotocols
    │       ├── DuplicateParameter
    │       ├── InvalidParameterName
    │       └── InvalidParameterValue
    ├── ProtocolError                   the peer broke RFC 6455 / RFC 7692
    │   ├── PayloadTooBig               a frame or message exceeds max_size
    │   └── InvalidUTF8                 text that is not UTF-8
    ├── TooManyFragments                (never raised: see its docstring)
    ├── InvalidState                    an operation not allowed in this state
    └── ConcurrencyError                two coroutines read at once (also a RuntimeError)

Each :class:`InvalidHandshake` raised by a server carries the HTTP status that the
server answers with, in :attr:`InvalidHandshake.status`. Each :class:`ProtocolError`
carries the close code that the connection is failed with, in
:attr:`ProtocolError.code`.
"""

from __future__ import annotations

import http
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .protocol.close import Close
    from .protocol.http11 import Response

__all__ = [
    "WebSocketException",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidURI",
    "InvalidProxy",
    "InvalidHandshake",
    "SecurityError",
    "RequestLineTooLong",
    "StatusLineTooLong",
    "HeaderLineTooLong",
    "TooManyHeaders",
    "ProxyError",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidMessage",
    "InvalidMethod",
    "InvalidProtocol",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidOrigin",
    "InvalidUpgrade",
    "InvalidVersion",
    "InvalidStatus",
    "NegotiationError",
    "DuplicateParameter",
    "InvalidParameterName",
    "InvalidParameterValue",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidUTF8",
    "TooManyFragments",
    "InvalidState",
    "ConcurrencyError",
]


class WebSocketException(Exception):
    """Root of every exception that portside raises on purpose."""


class ConnectionClosed(WebSocketException):
    """Raised when using a connection that is closed or closing.

    Attributes:
        rcvd: The close frame received from the peer, or ``None`` if none was.
        sent: The close frame sent to the peer, or ``None`` if none was.
        rcvd_then_sent: ``True`` if the peer started the closing handshake, ``False``
            if this side did, ``None`` when the handshake did not complete.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        # The message is built by __str__ when someone reads it.
        super().__init__(rcvd, sent, rcvd_then_sent)

    @property
    def code(self) -> int:
        """The close code received, 1005 if the frame had none, 1006 if no frame."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received, empty when there was none."""
        return "" if self.rcvd is None else self.rcvd.reason

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed properly: close frames with 1000, 1001 or no code."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error, or without a closing handshake."""


class InvalidURI(WebSocketException, ValueError):
    """A URI that is not a valid ``ws://`` or ``wss://`` address."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(f"{uri} isn't a valid URI: {msg}")


class InvalidProxy(WebSocketException, ValueError):
    """A proxy address that portside cannot use (``connect(proxy=...)``, ``*_proxy``)."""

    def __init__(self, proxy: str, msg: str) -> None:
        self.proxy = proxy
        self.msg = msg
        super().__init__(f"{proxy} isn't a valid proxy: {msg}")


class InvalidHandshake(WebSocketException):
    """The opening handshake failed.

    Attributes:
        status: The HTTP status a server answers this error with.
    """

    status: http.HTTPStatus = http.HTTPStatus.BAD_REQUEST


class SecurityError(InvalidHandshake):
    """An HTTP message hit a limit that protects against a hostile peer.

    The HTTP parser raises :class:`InvalidMessage` with one of the subclasses
    as its ``__cause__``, as websockets does.
    """


class RequestLineTooLong(SecurityError):
    """The request line is longer than ``MAX_LINE_LENGTH`` (8 KiB)."""

    status = http.HTTPStatus.REQUEST_URI_TOO_LONG


class StatusLineTooLong(SecurityError):
    """The status line of a response is longer than ``MAX_LINE_LENGTH`` (8 KiB)."""


class HeaderLineTooLong(SecurityError):
    """A header line is longer than ``MAX_LINE_LENGTH`` (8 KiB)."""

    status = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


class TooManyHeaders(SecurityError):
    """An HTTP message has more than ``MAX_HEADERS`` (128) header lines."""

    status = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


class ProxyError(InvalidHandshake):
    """Connecting through a proxy failed."""


class InvalidProxyMessage(ProxyError):
    """The proxy's answer to ``CONNECT`` is not valid HTTP, or the proxy hung up."""


class InvalidProxyStatus(ProxyError):
    """The proxy answered ``CONNECT`` with a status other than 2xx.

    Attributes:
        response: The proxy's response (407 when it wants credentials).
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(f"proxy rejected connection: HTTP {response.status_code:d}")


class InvalidMessage(InvalidHandshake):
    """The HTTP request or response is malformed or too large."""


class InvalidMethod(InvalidHandshake):
    """The opening request uses a method other than ``GET`` (HTTP 405).

    Attributes:
        method: The method of the request.
    """

    status = http.HTTPStatus.METHOD_NOT_ALLOWED

    def __init__(self, method: str) -> None:
        self.method = method
        super().__init__(f"unsupported HTTP method; expected GET; got {method}")


class InvalidProtocol(InvalidHandshake):
    """The opening request's HTTP version is not HTTP/1.1 (HTTP 505).

    Attributes:
        protocol: The version the request named.
    """

    status = http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        super().__init__(f"unsupported protocol; expected HTTP/1.1: {protocol}")


class InvalidHeader(InvalidHandshake):
    """A required HTTP header is missing, repeated or has a wrong value.

    Attributes:
        name: The header name.
        value: The offending value, ``None`` if the header is missing.
    """

    def __init__(self, name: str, value: str | None = None) -> None:
        self.name = name
        self.value = value
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        if self.value == "":
            return f"empty {self.name} header"
        return f"invalid {self.name} header: {self.value}"


class InvalidHeaderFormat(InvalidHeader):
    """A header value that cannot be parsed."""

    def __init__(self, name: str, error: str, header: str, pos: int) -> None:
        super().__init__(name, f"{error} at {pos} in {header}")


class InvalidHeaderValue(InvalidHeader):
    """A header value that parses but is not acceptable."""


class InvalidOrigin(InvalidHeader):
    """The ``Origin`` header is missing or not allowed."""

    status = http.HTTPStatus.FORBIDDEN

    def __init__(self, origin: str | None) -> None:
        super().__init__("Origin", origin)


class InvalidUpgrade(InvalidHeader):
    """The ``Upgrade`` or ``Connection`` header does not ask for WebSocket."""

    status = http.HTTPStatus.UPGRADE_REQUIRED


class InvalidVersion(InvalidHeader):
    """The ``Sec-WebSocket-Version`` header is not 13."""

    status = http.HTTPStatus.UPGRADE_REQUIRED


class InvalidStatus(InvalidHandshake):
    """The server answered the upgrade request with a status other than 101.

    Attributes:
        response: The HTTP response received.
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(f"server rejected WebSocket connection: HTTP {response.status_code}")


class NegotiationError(InvalidHandshake):
    """Extension or subprotocol negotiation failed."""


class DuplicateParameter(NegotiationError):
    """An extension parameter appears twice.

    Attributes:
        name: The parameter's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"duplicate parameter: {name}")


class InvalidParameterName(NegotiationError):
    """An extension parameter that the extension does not define.

    Attributes:
        name: The parameter's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"invalid parameter name: {name}")


class InvalidParameterValue(NegotiationError):
    """An extension parameter with a value the extension does not allow.

    Attributes:
        name: The parameter's name.
        value: The value, ``None`` when the parameter came without one.
    """

    def __init__(self, name: str, value: str | None) -> None:
        self.name = name
        self.value = value
        if value is None:
            message = f"missing value for parameter {name}"
        elif value == "":
            message = f"empty value for parameter {name}"
        else:
            message = f"invalid value for parameter {name}: {value}"
        super().__init__(message)


class ProtocolError(WebSocketException):
    """The peer violated the WebSocket protocol.

    Attributes:
        code: The close code the connection is failed with (RFC 6455 section 7.4.1).
    """

    code: int = 1002

    def __init__(self, message: str, code: int | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message)


class PayloadTooBig(ProtocolError):
    """A frame or message is larger than ``max_size`` (close code 1009)."""

    code = 1009


class InvalidUTF8(ProtocolError):
    """A text message or close reason is not valid UTF-8 (close code 1007)."""

    code = 1007


class TooManyFragments(WebSocketException):
    """Defined so that code catching websockets' exception ports; never raised.

    websockets raises it past its ``max_fragments`` option. portside has no such
    option: ``max_size`` bounds a message whatever its number of fragments, and
    a fragment costs no memory beyond its payload.
    """


class InvalidState(WebSocketException):
    """An operation is not allowed in the connection's current state."""


class ConcurrencyError(WebSocketException, RuntimeError):
    """Two coroutines tried to receive from one connection at the same time."""
