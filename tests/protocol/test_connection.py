from __future__ import annotations

import array

import pytest

from portside.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from portside.protocol import CLIENT, SERVER, Close, Protocol, State
from portside.protocol.deflate import PerMessageDeflate
from tests.framing import client_frame, close_payload, server_frame, unmask_frames

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def pair() -> tuple[Protocol, Protocol]:
    return Protocol(CLIENT), Protocol(SERVER)


def test_server_frames_are_unmasked() -> None:
    server = Protocol(SERVER)
    assert b"".join(server.send_text("hé")) == server_frame(TEXT, "hé".encode())
    assert b"".join(server.send_binary(b"\x00\x01")) == server_frame(BINARY, b"\x00\x01")


def test_large_server_payload_is_not_copied_behind_the_header() -> None:
    payload = bytes(100_000)
    frames = Protocol(SERVER).send_binary(payload)
    assert len(frames) == 2
    assert b"".join(frames) == server_frame(BINARY, payload)


def test_client_frames_are_masked_with_fresh_keys() -> None:
    client = Protocol(CLIENT)
    first = b"".join(client.send_text("hello"))
    second = b"".join(client.send_text("hello"))
    assert first[1] & 0x80 and second[1] & 0x80
    assert first[2:6] != second[2:6]
    assert unmask_frames(first + second) == [(0x81, TEXT, b"hello")] * 2


def test_client_masks_are_refilled() -> None:
    client = Protocol(CLIENT)
    keys = {b"".join(client.send_binary(b"x"))[2:6] for _ in range(2000)}
    assert len(keys) > 1900


def test_text_as_bytes_and_memoryview_payloads() -> None:
    server = Protocol(SERVER)
    assert b"".join(server.send_text(b"raw")) == server_frame(TEXT, b"raw")
    assert b"".join(server.send_binary(memoryview(b"abc")[1:])) == server_frame(BINARY, b"bc")
    assert b"".join(server.send_binary(bytearray(5000))) == server_frame(BINARY, bytes(5000))


def test_round_trip_every_message_kind() -> None:
    client, server = pair()
    data = b"".join(
        client.send_text("a")
        + client.send_binary(b"b")
        + client.send_text("c", fin=False)
        + client.send_continuation("d", fin=False)
        + client.send_continuation(b"e", fin=True)
    )
    assert server.receive_data(data) == ["a", b"b", "cde"]


def test_fragment_rules_on_sending() -> None:
    server = Protocol(SERVER)
    with pytest.raises(InvalidState, match="no fragmented message"):
        server.send_continuation(b"x", fin=True)
    server.send_binary(b"x", fin=False)
    with pytest.raises(InvalidState, match="being sent"):
        server.send_text("y")
    server.send_continuation(b"z", fin=True)
    server.send_text("ok")


def test_ping_rules() -> None:
    server = Protocol(SERVER)
    assert b"".join(server.send_ping(b"1")) == server_frame(PING, b"1")
    with pytest.raises(ValueError, match="awaiting a pong"):
        server.send_ping(b"1")
    with pytest.raises(ValueError, match="125"):
        server.send_ping(bytes(126))
    with pytest.raises(ValueError, match="125"):
        server.send_pong(bytes(126))
    assert b"".join(server.send_pong(b"beat")) == server_frame(PONG, b"beat")


# Closing handshake (RFC 6455 section 7).


def test_closing_started_by_the_client() -> None:
    client, server = pair()
    data = b"".join(client.send_close(1000, "done"))
    assert client.state is State.LOCAL_CLOSING
    assert client.close_expected()
    assert server.receive_data(data) == [Close(1000, "done")]
    assert server.state is State.CLOSED
    assert server.close_rcvd_then_sent is True
    assert client.receive_data(b"".join(server.data_to_send())) == [Close(1000)]
    assert client.state is State.CLOSED
    assert client.close_rcvd_then_sent is False
    assert isinstance(client.closed_error(), ConnectionClosedOK)
    assert isinstance(server.closed_error(), ConnectionClosedOK)
    assert str(server.closed_error()) == "received 1000 (OK) done; then sent 1000 (OK)"
    assert str(client.closed_error()) == "sent 1000 (OK) done; then received 1000 (OK)"


def test_messages_still_arrive_while_closing() -> None:
    client, server = pair()
    client.send_close()
    data = b"".join(server.send_text("last words") + server.send_close())
    assert client.receive_data(data) == ["last words", Close(1000)]


def test_sending_after_close_raises() -> None:
    client, _ = pair()
    client.send_close(1001)
    with pytest.raises(ConnectionClosedError):
        client.send_text("no")
    with pytest.raises(ConnectionClosedError):
        client.send_ping()
    with pytest.raises(ConnectionClosedError):
        client.send_close()


def test_close_with_error_code_is_an_error() -> None:
    client, server = pair()
    server.receive_data(b"".join(client.send_close(1011, "oops")))
    error = server.closed_error()
    assert isinstance(error, ConnectionClosedError)
    assert (error.code, error.reason) == (1011, "oops")


def test_close_without_code_is_ok() -> None:
    client, server = pair()
    server.receive_data(b"".join(client.send_close(1005)))
    assert isinstance(server.closed_error(), ConnectionClosedOK)
    assert server.close_code == 1005


def test_send_close_validates_its_arguments() -> None:
    client, _ = pair()
    with pytest.raises(ValueError, match="invalid close code"):
        client.send_close(1006)
    with pytest.raises(ValueError, match="123 bytes"):
        client.send_close(1000, "x" * 124)
    assert client.state is State.OPEN


def test_ping_after_local_close_still_gets_a_pong() -> None:
    client = Protocol(CLIENT)
    client.send_close()
    client.receive_data(server_frame(PING, b"p"))
    assert client.data_to_send()[0][0] == 0x8A


def test_fail_sends_close_and_stops_reading() -> None:
    server = Protocol(SERVER)
    data = server.fail(1002, "bad")
    assert data == [server_frame(CLOSE, close_payload(1002, "bad"))]
    assert server.state is State.CLOSED
    assert server.close_expected()
    assert server.receive_data(client_frame(TEXT, b"ignored")) == []
    assert server.fail(1002) == []


def test_fail_cuts_a_long_reason_short() -> None:
    server = Protocol(SERVER)
    reason = "é" * 100  # 200 bytes
    (frame,) = server.fail(1011, reason)
    assert server.close_sent is not None
    sent = server.close_sent.reason
    assert sent == "é" * 60 + "..."
    assert len(sent.encode()) == 123
    assert frame == server_frame(CLOSE, close_payload(1011, sent))
    # A reason that fits is sent as it is.
    exact = Protocol(SERVER)
    exact.fail(1011, "x" * 123)
    assert exact.close_sent == Close(1011, "x" * 123)


def test_fail_after_sending_close_does_not_send_another() -> None:
    client, _ = pair()
    client.send_close()
    assert client.fail(1002) == []
    assert client.close_sent == Close(1000)


def test_eof_without_close() -> None:
    server = Protocol(SERVER)
    assert server.close_code is None
    server.receive_eof()
    assert server.state is State.CLOSED
    assert (server.close_code, server.close_reason) == (1006, "")
    error = server.closed_error()
    assert isinstance(error, ConnectionClosedError)
    assert str(error) == "no close frame received or sent"
    assert error.code == 1006


def test_eof_after_sending_close() -> None:
    client, _ = pair()
    client.send_close()
    client.receive_eof()
    assert str(client.closed_error()) == "sent 1000 (OK); no close frame received"


def test_received_close_then_eof() -> None:
    client, server = pair()
    client.receive_data(b"".join(server.send_close(1001, "bye")))
    client.receive_eof()
    assert (client.close_code, client.close_reason) == (1001, "bye")


def test_connecting_state_refuses_sending() -> None:
    server = Protocol(SERVER, state=State.CONNECTING)
    with pytest.raises(InvalidState, match="handshake"):
        server.send_ping()


def test_repr() -> None:
    assert repr(Protocol(SERVER)) == "<Protocol server OPEN>"


# Compression on the sending side.


def codec(**kwargs: object) -> PerMessageDeflate:
    options: dict[str, object] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
    }
    options.update(kwargs)
    return PerMessageDeflate(**options)  # type: ignore[arg-type]


def compressed_pair(**kwargs: object) -> tuple[Protocol, Protocol]:
    client, server = pair()
    client.deflate = codec(**kwargs)
    server.deflate = codec(**kwargs)
    return client, server


def test_compressed_messages_round_trip() -> None:
    client, server = compressed_pair()
    frames = client.send_text("hello " * 100)
    assert unmask_frames(b"".join(frames))[0][0] == 0xC1, "RSV1 marks compression"
    assert server.receive_data(b"".join(frames)) == ["hello " * 100]
    frames = server.send_binary(b"\x00" * 10_000)
    assert len(b"".join(frames)) < 200
    assert client.receive_data(b"".join(frames)) == [b"\x00" * 10_000]


def test_small_messages_are_not_compressed() -> None:
    client, server = compressed_pair(min_size=32)
    frames = b"".join(server.send_text("tiny"))
    assert frames == server_frame(TEXT, b"tiny")
    assert client.receive_data(frames) == ["tiny"]


def test_compressed_fragments_set_rsv1_on_the_first_only() -> None:
    client, server = compressed_pair()
    frames = b"".join(
        server.send_text("a" * 50, fin=False)
        + server.send_continuation("b" * 50, fin=False)
        + server.send_continuation("", fin=True)
    )
    firsts = [first for first, _, _ in unmask_frames(frames)]
    assert firsts == [0x41, 0x00, 0x80]
    assert client.receive_data(frames) == ["a" * 50 + "b" * 50]


def test_eight_bit_window_sends_uncompressed() -> None:
    _, server = compressed_pair(local_max_window_bits=8)
    frames = b"".join(server.send_text("x" * 100))
    assert frames == server_frame(TEXT, b"x" * 100)


def test_typed_and_strided_memoryviews_are_sent_as_bytes() -> None:
    words = array.array("I", range(2000))
    for payload in (memoryview(words), memoryview(bytes(range(256)) * 40)[::2]):
        expected = payload.tobytes()
        client, server = pair()
        assert server.receive_data(b"".join(client.send_binary(payload))) == [expected]
        assert client.receive_data(b"".join(server.send_binary(payload))) == [expected]
        frames = server.send_binary(b"x", fin=False) + server.send_continuation(payload, fin=True)
        assert client.receive_data(b"".join(frames)) == [b"x" + expected]
