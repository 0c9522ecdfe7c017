"""Hostile input: arbitrary bytes, cut anywhere, never crash the parsers.

The reader may only return events (a ProtocolError among them); the HTTP
parsers may only return None, a message, or raise InvalidMessage; buffers stay
within the configured limits.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portside.exceptions import InvalidMessage, ProtocolError
from portside.protocol import CLIENT, SERVER, Protocol
from portside.protocol.deflate import PerMessageDeflate
from portside.protocol.http11 import MAX_BODY_SIZE, MAX_LINE_LENGTH, RequestParser, ResponseParser
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
