"""HTTP/1.1 requests and responses, as much as the opening handshake needs.

Parsing follows RFC 7230, with limits so that a hostile peer cannot make the
parser buffer without bound. HTTP/1.0 requests are read too, so that
``process_request`` can answer them (health checks, such as HAProxy's default
``option httpchk``); the WebSocket handshake itself needs HTTP/1.1.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass, field

from ..exceptions import (
    HeaderLineTooLong,
    InvalidMessage,
    InvalidProtocol,
    RequestLineTooLong,
    SecurityError,
    StatusLineTooLong,
    TooManyHeaders,
)
from .headers import Headers

__all__ = [
    "MAX_LINE_LENGTH",
    "MAX_HEADERS",
    "MAX_BODY_SIZE",
    "Request",
    "Response",
    "RequestParser",
    "ResponseParser",
]

#: The longest request line, status line or header line accepted, in bytes.
MAX_LINE_LENGTH = 8192
#: The most header lines accepted in a request or response.
MAX_HEADERS = 128
#: The largest response body a client reads from a server that refuses to upgrade.
MAX_BODY_SIZE = 2**20

# RFC 7230 3.2: header-field = field-name ":" OWS field-value OWS, where
# field-name is a token and field-value excludes CR, LF and NUL. A line that
# starts with whitespace (obsolete line folding) does not match.
_HEADER_LINE = re.compile(
    rb"([-!#$%&\'*+.^_`|~0-9a-zA-Z]+):[\t ]*"
    rb"((?:[\x21-\x7e\x80-\xff]+(?:[\t ]+[\x21-\x7e\x80-\xff]+)*)?)[\t ]*"
)
# The same rule for a block of header lines, each ending with CRLF, decoded as
# Latin-1 (which maps every byte to the code point of the same value): one
# match validates them all, and findall() then takes the names and values.
_HEADER_PAIR = _HEADER_LINE.pattern.decode("latin-1") + "\r\n"
_HEADER_BLOCK = re.compile(f"(?:{_HEADER_PAIR})*")
_HEADER_PAIRS = re.compile(_HEADER_PAIR)
# RFC 9110 5.6.2: token = 1*tchar, the characters of a method (9.1) and of a
# field name (5.1, _HEADER_LINE above).
_TOKEN = re.compile(rb"[-!#$%&\'*+.^_`|~0-9a-zA-Z]+")
# RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ],
# where reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ): no control
# character. The space after the code is optional here, as most clients take it.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?")


def _invalid(message: str, status: int = 400, cause: Exception | None = None) -> InvalidMessage:
    """An :class:`InvalidMessage`; ``cause`` names the rule broken, as websockets does."""
    error = InvalidMessage(message)
    error.status = http.HTTPStatus(status)
    error.__cause__ = cause
    return error


@dataclass
class Request:
    """An HTTP request: the opening handshake of a WebSocket connection.

    Attributes:
        path: The request target, such as ``/chat?room=1``.
        headers: The request headers.
        method: The request method; the server only accepts ``GET``.
        http_version: ``"HTTP/1.1"``, or ``"HTTP/1.0"`` for a request the
            parser read as such (which the server answers with 505 unless
            ``process_request`` answers it).
    """

    path: str
    headers: Headers
    method: str = "GET"
    # A class attribute, not a field: building a request costs nothing more,
    # and the parser sets it on HTTP/1.0 requests only.
    http_version = "HTTP/1.1"

    def serialize(self) -> bytes:
        """Return the request as bytes, ready to write."""
        line = f"{self.method} {self.path} {self.http_version}\r\n"
        return f"{line}{self.headers}".encode("latin-1")


@dataclass
class Response:
    """An HTTP response.

    Attributes:
        status_code: The status code, such as 101.
        reason_phrase: The reason phrase, such as ``Switching Protocols``.
        headers: The response headers.
        body: The response body.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = field(default=b"")

    @property
    def status(self) -> int:
        """The status code (an alias of :attr:`status_code`)."""
        return self.status_code

    def serialize(self) -> bytes:
        """Return the response as bytes, ready to write."""
        head = f"HTTP/1.1 {self.status_code} {self.reason_phrase}\r\n{self.headers}"
        return head.encode("latin-1") + self.body

    def for_http10(self) -> Response:
        """This response as an HTTP/1.0 client can read it: a copy, if it must change.

        ``Connection: close`` (the server closes after it), and no
        ``Transfer-Encoding``: a chunked body is decoded, with its length in
        ``Content-Length``. The status line stays ``HTTP/1.1``, as RFC 9110 2.5
        wants (the highest version the server speaks, of the request's major
        version).
        """
        headers = self.headers
        if headers.get_all("Connection") == ["close"] and "Transfer-Encoding" not in headers:
            return self
        headers = headers.copy()
        if "Connection" in headers:
            del headers["Connection"]
        headers["Connection"] = "close"
        body = self.body
        if "Transfer-Encoding" in headers:
            # RFC 9112 6.1: a server MUST NOT send Transfer-Encoding in a
            # response to an HTTP/1.0 request.
            codings = ",".join(headers.get_all("Transfer-Encoding")).lower()
            del headers["Transfer-Encoding"]
            if codings.rsplit(",", 1)[-1].strip() == "chunked":
                parser = ResponseParser()
                try:
                    decoded = parser.feed(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
                    )
                except InvalidMessage:
                    decoded = None
                if decoded is not None:
                    body = decoded.body
            if "Content-Length" in headers:
                del headers["Content-Length"]
            headers["Content-Length"] = str(len(body))
        return Response(self.status_code, self.reason_phrase, headers, body)


class _HeadParser:
    """Collects the head of an HTTP message: a first line and header lines."""

    #: What a first line that is too long is: a request line or a status line.
    _first_line_too_long: type[SecurityError] = SecurityError

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold complete lines
        self._lines = 0

    def _line_too_long(self) -> InvalidMessage:
        if self._lines:
            cause: SecurityError = HeaderLineTooLong(f"header line exceeds {MAX_LINE_LENGTH} bytes")
            return _invalid("line too long", 431, cause)
        cause = self._first_line_too_long(f"first line exceeds {MAX_LINE_LENGTH} bytes")
        return _invalid("line too long", 414, cause)

    def _feed_head(self, data: bytes) -> tuple[bytes, bytes, bytes] | None:
        """Return ``(first_line, header_block, rest)`` once the head is complete.

        ``header_block`` holds the header lines, each ending with CRLF.
        """
        buffer = self._buffer
        if not buffer:
            # The usual case: the whole head in the first read, well within the
            # limits, and a first line that is not empty. Anything else takes
            # the line-by-line path below, which says what is wrong.
            end = data.find(b"\r\n\r\n")
            first_end = data.find(b"\r\n")
            if (
                end >= 0
                and 0 < first_end <= MAX_LINE_LENGTH
                and end - first_end <= MAX_LINE_LENGTH
                and data.count(b"\r\n", first_end, end) <= MAX_HEADERS
            ):
                return data[:first_end], data[first_end + 2 : end + 2], data[end + 4 :]
        buffer += data
        while True:
            end = buffer.find(b"\r\n", self._scanned)
            if end < 0:
                if len(buffer) - self._scanned > MAX_LINE_LENGTH:
                    raise self._line_too_long()
                return None
            if end - self._scanned > MAX_LINE_LENGTH:
                raise self._line_too_long()
            if end == self._scanned:
                break  # the empty line that ends the head
            self._lines += 1
            if self._lines > MAX_HEADERS + 1:
                cause = TooManyHeaders(f"more than {MAX_HEADERS} headers")
                raise _invalid("too many headers", 431, cause)
            self._scanned = end + 2
        head = bytes(buffer[: self._scanned])
        rest = bytes(buffer[self._scanned + 2 :])
        self._buffer = bytearray()
        if not head:
            raise _invalid("empty request")
        first_end = head.find(b"\r\n")
        return head[:first_end], head[first_end + 2 :], rest

    @staticmethod
    def _parse_headers(block: bytes) -> Headers:
        text = block.decode("latin-1")
        if _HEADER_BLOCK.fullmatch(text) is None:
            # Name the first line that breaks the rule (at worst the empty
            # string after the last CRLF, which no line matches).
            line = next(x for x in block.split(b"\r\n") if _HEADER_LINE.fullmatch(x) is None)
            raise _invalid(f"invalid header line: {line[:100]!r}")
        return Headers(_HEADER_PAIRS.findall(text))


class RequestParser(_HeadParser):
    """Parses the request that opens a connection, fed in chunks of any size.

    Attributes:
        rest: Bytes received after the request, once it is complete.
    """

    _first_line_too_long = RequestLineTooLong

    def __init__(self) -> None:
        super().__init__()
        self.rest = b""

    def feed(self, data: bytes) -> Request | None:
        """Add received bytes; return the request once complete, else ``None``.

        Raises:
            InvalidMessage: If the request is malformed or exceeds the limits; its
                ``status`` is the HTTP status to answer with.
        """
        head = self._feed_head(data)
        if head is None:
            return None
        first, block, self.rest = head
        parts = first.split(b" ")
        if len(parts) != 3:
            raise _invalid(f"invalid request line: {first[:100]!r}")
        method, target, version = parts
        # RFC 9110 9.1: the method is a token (GET is, and comes first).
        if method != b"GET" and _TOKEN.fullmatch(method) is None:
            raise _invalid(f"invalid request method: {method[:20]!r}")
        if not version.startswith(b"HTTP/"):
            raise _invalid(f"invalid request line: {first[:100]!r}")
        if version != b"HTTP/1.1" and version != b"HTTP/1.0":
            # portside speaks HTTP/1.1, and reads HTTP/1.0 requests for
            # process_request; the handshake needs 1.1 (ServerProtocol.accept).
            cause = InvalidProtocol(version[:20].decode("latin-1"))
            raise _invalid(f"unsupported HTTP version: {version[:20]!r}", 505, cause)
        try:
            path = target.decode("ascii")
        except UnicodeDecodeError:
            raise _invalid("non-ASCII request target") from None
        # The split on spaces leaves none in the path; isprintable() is false
        # for DEL and every other control character.
        if not path or not path.isprintable():
            raise _invalid("invalid request target")
        headers = self._parse_headers(block)
        # RFC 6455 4.1: the opening handshake is a GET request without a body.
        length = headers.get_all("Content-Length")
        if headers.get_all("Transfer-Encoding") or (length and length != ["0"]):
            raise _invalid("request bodies are not supported")
        request = Request(path, headers, "GET" if method == b"GET" else method.decode("ascii"))
        if version != b"HTTP/1.1":
            request.http_version = "HTTP/1.0"
        return request


class ResponseParser(_HeadParser):
    """Parses the server's answer to the opening handshake.

    A ``101`` response ends with its head; any other response is read with its
    body (by ``Content-Length``, chunked, or until the connection closes).

    Args:
        tunnel: Parse the answer to a ``CONNECT`` request instead: a 2xx
            response then ends with its head, whatever its headers say
            (RFC 9110 9.3.6), and what follows belongs to the tunnel.

    Attributes:
        rest: Bytes received after the response, once it is complete: the first
            WebSocket frames when the upgrade succeeded (the first bytes from the
            tunnel after a ``CONNECT``).
    """

    _first_line_too_long = StatusLineTooLong

    def __init__(self, *, tunnel: bool = False) -> None:
        super().__init__()
        self.tunnel = tunnel
        self.rest = b""
        self._response: Response | None = None
        self._body = bytearray()
        self._length: int | None = None  # None: until EOF; -1: chunked
        self._chunk_state = bytearray()

    def feed(self, data: bytes) -> Response | None:
        """Add received bytes; return the response once complete, else ``None``.

        Raises:
            InvalidMessage: If the response is malformed or its body too large.
        """
        if self._response is None:
            head = self._feed_head(data)
            if head is None:
                return None
            first, block, data = head
            match = _STATUS_LINE.fullmatch(first)
            if match is None:
                raise _invalid(f"invalid status line: {first[:100]!r}")
            code = int(match.group(1))
            if not 100 <= code < 600:
                raise _invalid(f"invalid status code: {code}")
            reason = (match.group(2) or b"").decode("latin-1")
            headers = self._parse_headers(block)
            self._response = Response(code, reason, headers)
            # RFC 9110 9.3.6: a 2xx answer to CONNECT opens the tunnel right
            # after its head; Content-Length and Transfer-Encoding are ignored.
            if code < 200 or code in (204, 304) or (self.tunnel and code < 300):
                self.rest = data
                return self._response
            encodings = headers.get_all("Transfer-Encoding")
            lengths = headers.get_all("Content-Length")
            if "chunked" in ",".join(encodings).lower():
                self._length = -1
            elif lengths:
                # RFC 7230 3.3.2: repeated Content-Length headers must agree.
                if len(set(lengths)) > 1:
                    raise _invalid("conflicting Content-Length headers")
                try:
                    self._length = int(lengths[0])
                except ValueError:
                    raise _invalid("invalid Content-Length") from None
                if not 0 <= self._length <= MAX_BODY_SIZE:
                    raise _invalid("response body too large")
        return self._feed_body(data)

    def _feed_body(self, data: bytes) -> Response | None:
        assert self._response is not None
        if self._length == -1:
            return self._feed_chunked(data)
        self._body += data
        if len(self._body) > MAX_BODY_SIZE:
            raise _invalid("response body too large")
        if self._length is not None and len(self._body) >= self._length:
            self.rest = bytes(self._body[self._length :])
            self._response.body = bytes(self._body[: self._length])
            return self._response
        return None

    def _feed_chunked(self, data: bytes) -> Response | None:
        assert self._response is not None
        buf = self._chunk_state
        buf += data
        while True:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_LINE_LENGTH:
                    raise _invalid("chunk size line too long")
                return None
            size_text = bytes(buf[:end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _invalid("invalid chunk size") from None
            if size == 0:
                # The last chunk; trailers are not supported: expect the final CRLF.
                if len(buf) < end + 4:
                    return None
                self.rest = bytes(buf[end + 4 :])
                self._response.body = bytes(self._body)
                return self._response
            if len(self._body) + size > MAX_BODY_SIZE:
                raise _invalid("response body too large")
            if len(buf) < end + 2 + size + 2:
                return None
            self._body += buf[end + 2 : end + 2 + size]
            del buf[: end + 2 + size + 2]

    def feed_eof(self) -> Response:
        """Signal the end of the stream; return the response read until then.

        Raises:
            InvalidMessage: If the response is incomplete.
        """
        if self._response is None or self._length is not None:
            # EOFError as the cause: the reconnecting client retries (as websockets').
            raise _invalid(
                "connection closed before the response was complete",
                cause=EOFError("connection closed while reading HTTP response"),
            )
        self._response.body = bytes(self._body)
        return self._response
