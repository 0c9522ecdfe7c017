from __future__ import annotations

import logging
import sys

import pytest

from portside.protocol import CLIENT, SERVER, Protocol
from portside.protocol.broadcast import BroadcastMessage
from portside.protocol.deflate import PerMessageDeflate
from portside.protocol.speedups import encode_frame
from tests.framing import server_frame, unmask_frames

MESSAGE = "broadcast " * 20  # 200 bytes, compressible


def compressing(**deflate: object) -> Protocol:
    """A server protocol with permessage-deflate, as negotiated with ``deflate``."""
    protocol = Protocol(SERVER)
    options: dict[str, object] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
    }
    options.update(deflate)
    protocol.deflate = PerMessageDeflate(**options)  # type: ignore[arg-type]
    return protocol


def joined(frames: bytes | list[bytes]) -> bytes:
    assert isinstance(frames, list)
    return b"".join(frames)


@pytest.mark.parametrize(
    ("message", "text", "opcode", "payload"),
    [
        ("hé", None, 0x1, "hé".encode()),
        ("hé", False, 0x2, "hé".encode()),
        (b"\x00", None, 0x2, b"\x00"),
        (bytearray(b"ok"), True, 0x1, b"ok"),
        (memoryview(b"ok"), None, 0x2, b"ok"),
    ],
)
def test_message_and_its_frame(
    message: str | bytes, text: bool | None, opcode: int, payload: bytes
) -> None:
    encoded = BroadcastMessage(message, text)
    assert (encoded.opcode, encoded.payload) == (opcode, payload)
    assert type(encoded.payload) is bytes
    assert encoded.frame == server_frame(opcode, payload)


def test_message_must_be_str_or_bytes() -> None:
    with pytest.raises(TypeError, match="message must be str or bytes-like, not int"):
        BroadcastMessage(42)  # type: ignore[arg-type]


def test_server_without_compression_shares_the_frame() -> None:
    encoded = BroadcastMessage(MESSAGE)
    assert encoded.frames_for(Protocol(SERVER)) is encoded.frame


@pytest.mark.parametrize(
    "deflate",
    [
        {"min_size": 1000},  # the message is below min_size
        {"local_max_window_bits": 8},  # zlib cannot compress with an 8-bit window
    ],
)
def test_server_sending_it_uncompressed_shares_the_frame(deflate: dict[str, object]) -> None:
    encoded = BroadcastMessage(MESSAGE)
    assert encoded.frames_for(compressing(**deflate)) is encoded.frame
    # What the connection's protocol would have sent.
    assert b"".join(compressing(**deflate).send_text(MESSAGE)) == encoded.frame


def test_without_context_takeover_one_compression_per_setting() -> None:
    encoded = BroadcastMessage(MESSAGE)
    first = encoded.frames_for(
        compressing(local_no_context_takeover=True, local_max_window_bits=10)
    )
    again = encoded.frames_for(
        compressing(local_no_context_takeover=True, local_max_window_bits=10)
    )
    other = encoded.frames_for(
        compressing(local_no_context_takeover=True, local_max_window_bits=12)
    )
    assert isinstance(first, bytes)
    assert again is first
    assert other is not first  # compressed again, for the other setting
    # The same bytes as the connection's own compressor, for this message and the next.
    for bits, frame in ((10, first), (12, other)):
        own = compressing(local_no_context_takeover=True, local_max_window_bits=bits)
        assert b"".join(own.send_text(MESSAGE)) == frame
        assert b"".join(own.send_text(MESSAGE)) == frame
    assert frame[0] == 0xC1  # RSV1: compressed


def test_with_context_takeover_the_connections_compressor() -> None:
    encoded = BroadcastMessage(MESSAGE)
    protocol = compressing()
    # The protocol's own frames: its compressor remembers the message, so the
    # second time the same message is shorter.
    first = joined(encoded.frames_for(protocol))
    second = joined(encoded.frames_for(protocol))
    assert first[0] == second[0] == 0xC1
    assert len(second) < len(first)


def test_clients_mask_their_own_frames() -> None:
    encoded = BroadcastMessage(b"data")
    frames = joined(encoded.frames_for(Protocol(CLIENT)))
    assert unmask_frames(frames) == [(0x82, 0x2, b"data")]
    assert frames != encode_frame(0x82, b"data", None)


def test_report_logs_the_error_and_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    encoded = BroadcastMessage("x")
    logger = logging.getLogger("portside.test")
    error = RuntimeError("failed to write message")
    error.__cause__ = ConnectionResetError("reset by peer")
    with caplog.at_level(logging.WARNING, "portside.test"):
        encoded.report(logger, ValueError("plain"))
        encoded.report(logger, error)
    assert [record.getMessage() for record in caplog.records] == [
        "skipped broadcast: plain",
        "skipped broadcast: failed to write message: ConnectionResetError: reset by peer",
    ]
    assert encoded.errors == []
    encoded.raise_errors()  # nothing collected: nothing raised


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11's")
def test_raise_exceptions_collects_and_raises_them_together(
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoded = BroadcastMessage("x", raise_exceptions=True)
    errors = [ValueError("one"), RuntimeError("two")]
    for error in errors:
        encoded.report(logging.getLogger("portside.test"), error)
    assert not caplog.records
    with pytest.raises(Exception, match="skipped broadcast") as raised:
        encoded.raise_errors()
    assert type(raised.value).__name__ == "ExceptionGroup"
    assert list(raised.value.exceptions) == errors  # type: ignore[attr-defined]
