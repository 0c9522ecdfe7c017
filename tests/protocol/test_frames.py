from __future__ import annotations

from collections.abc import Generator

import pytest

from portside.exceptions import PayloadTooBig, ProtocolError
from portside.protocol.frames import CTRL_OPCODES, DATA_OPCODES, Frame, Opcode
from tests.framing import client_frame


def parse(data: bytes, *, mask: bool, max_size: int | None = None) -> Frame:
    """Run Frame.parse over ``data``, which must hold exactly one frame."""
    view = memoryview(data)

    def read_exact(n: int) -> Generator[None, None, bytes]:
        nonlocal view
        if len(view) < n:
            raise EOFError
        chunk, view = bytes(view[:n]), view[n:]
        return chunk
        yield  # a generator-based coroutine, like websockets'

    parser = Frame.parse(read_exact, mask=mask, max_size=max_size)
    try:
        next(parser)
    except StopIteration as done:
        assert not view, "bytes left over"
        frame: Frame = done.value
        return frame
    raise AssertionError("the parser waited")  # pragma: no cover


def test_opcodes() -> None:
    assert [int(op) for op in Opcode] == [0, 1, 2, 8, 9, 10]
    assert set(DATA_OPCODES) | set(CTRL_OPCODES) == set(Opcode)


@pytest.mark.parametrize(
    ("frame", "data"),
    [
        (Frame(Opcode.TEXT, b"Hello"), b"\x81\x05Hello"),
        (Frame(Opcode.TEXT, b"Hel", fin=False), b"\x01\x03Hel"),
        (Frame(Opcode.CONT, b"lo"), b"\x80\x02lo"),
        (Frame(Opcode.BINARY, b"\x00" * 256), b"\x82\x7e\x01\x00" + b"\x00" * 256),
        (
            Frame(Opcode.BINARY, b"x" * 65536),
            b"\x82\x7f" + (65536).to_bytes(8, "big") + b"x" * 65536,
        ),
        (Frame(Opcode.PING, b""), b"\x89\x00"),
        (Frame(Opcode.TEXT, b"c", rsv1=True), b"\xc1\x01c"),
    ],
)
def test_serialize_and_parse_server_frames(frame: Frame, data: bytes) -> None:
    # RFC 6455 5.7's examples among them.
    assert frame.serialize(mask=False) == data
    assert parse(data, mask=False) == frame


def test_masked_round_trip() -> None:
    frame = Frame(Opcode.TEXT, b"Hello")
    data = frame.serialize(mask=True)
    assert data[1] == 0x85 and data[6:] != b"Hello"
    assert parse(data, mask=True) == frame
    assert parse(client_frame(0x1, b"Hi"), mask=True) == Frame(Opcode.TEXT, b"Hi")


@pytest.mark.parametrize(
    ("data", "mask", "error"),
    [
        (b"\x83\x00", False, "invalid opcode"),
        (b"\x81\x80\x00\x00\x00\x00", False, "incorrect masking"),
        (b"\x81\x00", True, "incorrect masking"),
        (b"\xa1\x00", False, "reserved bits must be 0"),
        (b"\x09\x00", False, "fragmented control frame"),
        (b"\x89\x7e\x00\x7e" + b"x" * 126, False, "control frame too long"),
    ],
)
def test_parse_errors(data: bytes, mask: bool, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        parse(data, mask=mask)


def test_parse_max_size() -> None:
    assert parse(b"\x82\x02ab", mask=False, max_size=2).data == b"ab"
    with pytest.raises(PayloadTooBig, match="exceeds max_size of 1"):
        parse(b"\x82\x02ab", mask=False, max_size=1)


def test_serialize_checks() -> None:
    with pytest.raises(ProtocolError):
        Frame(Opcode.CLOSE, b"x" * 126).serialize(mask=False)


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (Frame(Opcode.TEXT, b"Hello"), "TEXT 'Hello' [5 bytes]"),
        (Frame(Opcode.TEXT, b"a", fin=False), "TEXT 'a' [1 byte, continued]"),
        (Frame(Opcode.BINARY, b"\xff\x00"), "BINARY ff 00 [2 bytes]"),
        (Frame(Opcode.PING, b""), "PING '' [0 bytes]"),
        (Frame(Opcode.CLOSE, b"\x03\xe8bye"), "CLOSE 1000 (OK) bye [5 bytes]"),
        (Frame(Opcode.CLOSE, b"\x00"), "CLOSE 00 [1 byte]"),
        (Frame(Opcode.CLOSE, b""), "CLOSE '' [0 bytes]"),
    ],
)
def test_str(frame: Frame, text: str) -> None:
    assert str(frame) == text


def test_str_cuts_long_payloads() -> None:
    text = str(Frame(Opcode.TEXT, b"a" * 1000))
    assert "..." in text
    assert len(text) < 100
    assert text.endswith("[1000 bytes]")
