"""Hostile input: arbitrary bytes, cut anywhere, never crash the parsers.

The reader may only return events (a ProtocolError among them); the HTTP
parsers may only return None, a message, or raise InvalidMessage; buffers stay
within the configured limits.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portside.exceptions import InvalidHandshake, InvalidMessage, ProtocolError
from portside.protocol import CLIENT, SERVER, ClientProtocol, Protocol, ServerProtocol
from portside.protocol.deflate import Deflate, PerMessageDeflate
from portside.protocol.handshake import accept_key
from portside.protocol.http11 import MAX_BODY_SIZE, MAX_LINE_LENGTH, RequestParser, ResponseParser
from portside.protocol.state import OPEN
from portside.protocol.uri import parse_uri
from tests.framing import frame

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# Frames that are plausible enough to get past the first byte or two.
frames = st.builds(
    frame,
    opcode=st.sampled_from([0, 1, 2, 3, 8, 9, 10, 15]),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4]),
    mask=st.sampled_from([None, b"\x00\x00\x00\x00", b"\x9a\x01\xfe\x33"]),
)
streams = st.one_of(
    st.binary(max_size=2000),
    st.lists(frames, max_size=12).map(b"".join),
    st.tuples(st.lists(frames, max_size=6).map(b"".join), st.binary(max_size=50)).map(
        lambda parts: parts[0] + parts[1]
    ),
)
cuts = st.lists(st.integers(min_value=1, max_value=300), max_size=20)


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces = []
    for size in sizes:
        if not data:
            break
        pieces.append(data[:size])
        data = data[size:]
    if data:
        pieces.append(data)
    return pieces


@SETTINGS
@given(data=streams, sizes=cuts, side=st.sampled_from([SERVER, CLIENT]), deflate=st.booleans())
def test_reader_survives_anything(
    data: bytes, sizes: list[int], side: object, deflate: bool
) -> None:
    protocol = Protocol(side, max_size=1000, read_limit=256)  # type: ignore[arg-type]
    if deflate:
        protocol.deflate = PerMessageDeflate(
            remote_no_context_takeover=False,
            local_no_context_takeover=False,
            remote_max_window_bits=15,
            local_max_window_bits=15,
        )
    failed = False
    for piece in chunks(data, sizes):
        events = protocol.receive_data(piece)
        for event in events:
            assert not failed, "nothing may follow a protocol error"
            if isinstance(event, ProtocolError):
                assert event.code in (1002, 1007, 1009)
                failed = True
        # Bytes held for a cut frame stay within one frame of max_size.
        held = len(protocol._tail) + (len(protocol._big) if protocol._big is not None else 0)
        assert held <= 1000 + 14 + 4096 + (1000 >> 10) + 64
        assert sum(len(str(p)) for p in protocol._msg_parts) <= 4 * 1000


@SETTINGS
@given(data=st.binary(max_size=3000), sizes=cuts)
def test_request_parser_survives_anything(data: bytes, sizes: list[int]) -> None:
    parser = RequestParser()
    status = 0
    try:
        for piece in chunks(b"GET / HTTP/1.1\r\n" + data, sizes):
            if parser.feed(piece) is not None:
                break
    except InvalidMessage as exc:
        status = exc.status
    assert status == 0 or 400 <= status < 600
    assert len(parser._buffer) <= (MAX_LINE_LENGTH + 2) * 130


@SETTINGS
@given(data=st.binary(max_size=3000), sizes=cuts, eof=st.booleans())
def test_response_parser_survives_anything(data: bytes, sizes: list[int], eof: bool) -> None:
    parser = ResponseParser()
    try:
        for piece in chunks(b"HTTP/1.1 " + data, sizes):
            if parser.feed(piece) is not None:
                return
        if eof:
            parser.feed_eof()
    except InvalidMessage:
        pass
    assert len(parser._body) <= MAX_BODY_SIZE


# Opening handshakes assembled from the headers that matter, each present zero,
# one or two times, with valid, borderline and malformed values: the checks
# after parsing (RFC 6455 4.2.1 on the server, 4.1 on the client) may only
# answer with an HTTP status or raise InvalidHandshake.
_TOKENISH = st.sampled_from(
    ["", " ", ",", ";", "=", '"', "\\", "a", "x y", "\t", "\u00e9", "13", "8", "15", "16", "0"]
)
_JUNK = st.lists(_TOKENISH, max_size=6).map("".join)


def _usually(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values four times in five, so that every later check is reached."""
    return st.tuples(st.integers(0, 4), valid, _JUNK).map(lambda t: t[1] if t[0] else t[2])


_DEFLATE_PARAMS = st.sampled_from(
    [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "server_max_window_bits=8",
        "server_max_window_bits=15",
        "server_max_window_bits=16",
        'server_max_window_bits="10"',
        "client_max_window_bits=9",
        "client_max_window_bits=07",
        "client_max_window_bits=x",
        "server_no_context_takeover=1",
        "unknown=1",
    ]
)
_EXTENSIONS = _usually(
    st.lists(
        st.tuples(
            st.sampled_from(["permessage-deflate", "x-webkit-deflate-frame", "foo"]),
            st.lists(_DEFLATE_PARAMS, max_size=3),
        ).map(lambda ext: "; ".join([ext[0], *ext[1]])),
        min_size=1,
        max_size=3,
    ).map(", ".join)
)
_REQUEST_HEADERS = {
    "Host": _usually(st.just("example.com")),
    "Upgrade": _usually(st.sampled_from(["websocket", "WebSocket", "h2c, websocket"])),
    "Connection": _usually(st.sampled_from(["Upgrade", "keep-alive, upgrade"])),
    "Sec-WebSocket-Key": _usually(
        st.sampled_from(
            ["dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ", "AAAAAAAAAAAAAAAAAAAAAA=="]
        )
    ),
    "Sec-WebSocket-Version": _usually(st.sampled_from(["13", "8", " 13"])),
    "Sec-WebSocket-Extensions": _EXTENSIONS,
    "Sec-WebSocket-Protocol": _usually(st.sampled_from(["chat", "chat, superchat", "x"])),
    "Origin": _usually(st.just("https://example.com")),
    "Content-Length": st.sampled_from(["0", "1", "-1", "x"]),
    "Transfer-Encoding": st.sampled_from(["chunked", "gzip", ""]),
}


# How many times a header appears. Headers that end the handshake early when
# present at all (framing headers in a request, optional ones in a response)
# come rarely, so that most examples get to the end of the checks.
_COUNTS = [0, 1, 1, 1, 1, 1, 1, 1, 1, 2]
_RARE_COUNTS = [0] * 18 + [1, 2]
_OPTIONAL_COUNTS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
_RARE = frozenset({"Content-Length", "Transfer-Encoding", "Location"})


def _header_lines(
    draw: st.DrawFn,
    choices: dict[str, st.SearchStrategy[str]],
    optional: frozenset[str] = frozenset(),
) -> list[str]:
    lines = []
    for name, values in choices.items():
        counts = _RARE_COUNTS if name in _RARE else _COUNTS
        if name in optional:
            counts = _OPTIONAL_COUNTS
        for _ in range(draw(st.sampled_from(counts))):
            lines.append(f"{name}: {draw(values)}")
    return draw(st.permutations(lines))


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "GET", "GET", "POST"]))
    lines = [f"{method} /chat HTTP/1.1", *_header_lines(draw, _REQUEST_HEADERS)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@SETTINGS
@given(
    data=_requests(),
    compression=st.sampled_from([None, Deflate(), Deflate(server_max_window_bits=None)]),
    subprotocols=st.sampled_from([None, ["superchat", "chat"]]),
    origins=st.sampled_from([None, ["https://example.com", None]]),
)
def test_server_handshake_answers_anything(
    data: bytes,
    compression: Deflate | None,
    subprotocols: list[str] | None,
    origins: list[str | None] | None,
) -> None:
    server = ServerProtocol(compression=compression, subprotocols=subprotocols, origins=origins)
    try:
        request = server.receive_request(data)
    except InvalidMessage:
        assert server.handshake_exc is not None
        assert 400 <= server.handshake_exc.status < 500  # type: ignore[attr-defined]
        return
    assert request is not None
    response = server.accept(request)
    assert response.serialize().startswith(b"HTTP/1.1 ")
    if response.status_code == 101:
        assert server.handshake_exc is None
        assert request.headers.get_all("Sec-WebSocket-Version") == ["13"]
        key = request.headers["Sec-WebSocket-Key"]
        assert response.headers["Sec-WebSocket-Accept"] == accept_key(key)
        if server.subprotocol is not None:
            assert subprotocols is not None
            assert server.subprotocol in subprotocols
            offered = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
            assert server.subprotocol in [p.strip() for p in offered.split(",")]
        server.send_response(response)
        assert server.state is OPEN
        assert (server.deflate is not None) == ("Sec-WebSocket-Extensions" in response.headers)
        assert server.deflate is None or compression is not None
    else:
        assert 400 <= response.status_code < 500
        assert isinstance(server.handshake_exc, (InvalidHandshake, InvalidMessage))
        server.send_response(response)
        assert server.state is not OPEN


_RESPONSE_HEADERS = {
    "Upgrade": _REQUEST_HEADERS["Upgrade"],
    "Connection": _REQUEST_HEADERS["Connection"],
    "Sec-WebSocket-Accept": _usually(st.just("<accept>")),
    "Sec-WebSocket-Extensions": _EXTENSIONS,
    "Sec-WebSocket-Protocol": _REQUEST_HEADERS["Sec-WebSocket-Protocol"],
    "Location": st.sampled_from(["/", "ws://other.example/", "http://[::1", ""]),
    "Content-Length": _REQUEST_HEADERS["Content-Length"],
    "Transfer-Encoding": _REQUEST_HEADERS["Transfer-Encoding"],
}


# A response may leave these out, and must when the client did not offer them.
_OPTIONAL_IN_RESPONSE = frozenset({"Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"})


@st.composite
def _responses(draw: st.DrawFn) -> str:
    status = draw(
        st.sampled_from(["101 Switching Protocols"] * 4 + ["101 OK", "302 Found", "200 OK"])
    )
    lines = [f"HTTP/1.1 {status}", *_header_lines(draw, _RESPONSE_HEADERS, _OPTIONAL_IN_RESPONSE)]
    return "\r\n".join(lines) + "\r\n\r\n"


@SETTINGS
@given(
    text=_responses(),
    compression=st.sampled_from([None, Deflate(), Deflate(server_no_context_takeover=True)]),
    subprotocols=st.sampled_from([None, ["chat"]]),
    eof=st.booleans(),
)
def test_client_handshake_answers_anything(
    text: str, compression: Deflate | None, subprotocols: list[str] | None, eof: bool
) -> None:
    client = ClientProtocol(
        parse_uri("ws://example.com/chat"), compression=compression, subprotocols=subprotocols
    )
    client.send_request(client.connect())
    data = text.replace("<accept>", accept_key(client._key)).encode("utf-8")
    try:
        response = client.receive_response(data)
        if response is None:
            assert eof or data.endswith(b"\r\n\r\n")
            if not eof:
                return
            response = client.receive_response_eof()
    except InvalidMessage:
        return
    try:
        client.process_response(response)
    except InvalidHandshake:
        assert client.state is not OPEN
        return
    # What the connection opened with is what the response said, unambiguously.
    assert client.state is OPEN
    assert response.status_code == 101
    headers = response.headers
    assert headers.get_all("Sec-WebSocket-Accept") == [accept_key(client._key)]
    chosen = [p for v in headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
    # Empty list elements do not count (RFC 7230 7).
    chosen = [p.strip() for p in chosen if p.strip()]
    assert chosen == ([client.subprotocol] if client.subprotocol else [])
    assert client.subprotocol is None or client.subprotocol in (subprotocols or [])
    extensions = ",".join(headers.get_all("Sec-WebSocket-Extensions")).replace(",", "").strip()
    assert (client.deflate is not None) == bool(extensions)
    assert client.deflate is None or compression is not None
