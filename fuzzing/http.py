"""The HTTP parsers of the opening handshake: requests and responses.

portside parses HTTP/1.1 heads in Python only (there is no C twin of
``portside/protocol/http11.py`` to compare with). The check here is the
property that a C twin would have to share: fed the same bytes whole or in
any chunks, a parser gives the same result -- the same request or response,
or ``InvalidMessage`` with the same message -- and nothing else ever comes out
of it (no IndexError, no UnicodeDecodeError, no unbounded buffer); what it
parsed serializes, and a request serialized parses as itself.

Run it with ``python -m fuzzing.run http``; ``check(data)`` is the whole check,
which the test suite replays on saved inputs.
"""

from __future__ import annotations

from typing import Any

from portside.exceptions import InvalidMessage
from portside.protocol.http11 import Request, RequestParser, ResponseParser

from .source import Source

# Pieces of heads, well formed and not, that the fuzzer strings together.
PIECES = [
    b"GET / HTTP/1.1\r\n",
    b"GET /chat?x=1 HTTP/1.1\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 404 Not Found\r\n",
    b"Host: example.com\r\n",
    b"Upgrade: websocket\r\n",
    b"Connection: Upgrade\r\n",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    b"Sec-WebSocket-Version: 13\r\n",
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"X-Folded: a\r\n b\r\n",
    b"\r\n",
    b"\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"hello",
    b": no name\r\n",
    b"Bad Header\r\n",
    b"\x00\xff\xfe",
    b" ",
]


def outcome(parser: Any, chunks: list[bytes], eof: bool) -> tuple[Any, ...]:
    result = None
    unread = b""
    try:
        for number, chunk in enumerate(chunks):
            result = parser.feed(chunk)
            if result is not None:
                unread = b"".join(chunks[number + 1 :])
                break
        if result is None and eof and isinstance(parser, ResponseParser):
            result = parser.feed_eof()
    except InvalidMessage as exc:
        return ("InvalidMessage", str(exc), exc.status)
    if result is None:
        return ("incomplete",)
    # What came after the message: what the parser kept, then what it was not fed.
    rest = getattr(parser, "rest", b"") + unread
    # What was parsed can be written again (serialize() once failed on a request
    # parsed from b"G\xffT / ...": regressions/http/non-ascii-method), and a
    # request written again parses as the same request.
    written = result.serialize()
    if isinstance(result, Request):
        assert RequestParser().feed(written) == result, f"{result} written as {written!r}"
    return ("parsed", repr(result), written, rest)


def check(data: bytes) -> None:
    """The whole check on one input: raises AssertionError on a divergence."""
    source = Source(data)
    stream = b"".join(
        PIECES[source.integer(len(PIECES))]
        if source.integer(4)
        else source.take(source.integer(12))
        for _ in range(source.integer(24))
    )
    cuts = sorted(source.integer(len(stream) + 1) for _ in range(source.integer(12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [chunk for chunk in chunks if chunk]
    eof = source.boolean()
    for make in (RequestParser, ResponseParser):
        whole = outcome(make(), [stream] if stream else [], eof)
        pieces = outcome(make(), chunks, eof)
        assert whole == pieces, f"{make.__name__}: whole {whole} != in chunks {pieces}"


def main() -> None:  # pragma: no cover - the fuzzer's entry point
    from .run import fuzz

    fuzz(check)
