"""Connections of the threading API over loopback sockets: messages, control frames, closing."""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from portside.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from portside.protocol.state import CLOSED, OPEN
from portside.sync.client import connect
from portside.sync.connection import _BACKGROUND, READ_LEASE
from portside.sync.server import ServerConnection
from portside.sync.transport import wait_for
from tests.framing import client_frame, close_payload, unmask_frames, upgrade_response
from tests.sync.helpers import TIMEOUT, RawClient, pair, read_head, running, url

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


# Messages.


@pytest.mark.parametrize(
    "message",
    [
        "hello",
        "",
        "☕" * 5000,
        b"\x00\x01",
        b"",
        bytes(range(256)) * 1000,
        bytes(range(256)) * 8192,  # 2 MiB, above the default max_size
    ],
    ids=["text", "empty-text", "long-text", "binary", "empty-binary", "long-binary", "2-MiB"],
)
def test_messages_both_ways(message: str | bytes) -> None:
    with pair(max_size=None, client_max_size=None) as (server, client):
        client.send(message)
        assert server.recv(timeout=TIMEOUT) == message
        server.send(message)
        assert client.recv(timeout=TIMEOUT) == message


def test_bytes_like_messages_are_binary() -> None:
    with pair() as (server, client):
        client.send(bytearray(b"array"))
        client.send(memoryview(b"view"))
        client.send(memoryview(bytes(range(8))).cast("H"))
        assert server.recv(timeout=TIMEOUT) == b"array"
        assert server.recv(timeout=TIMEOUT) == b"view"
        assert server.recv(timeout=TIMEOUT) == bytes(range(8))


def test_text_option_overrides_the_type() -> None:
    with pair() as (server, client):
        client.send(b"caf\xc3\xa9", text=True)
        client.send("binary", text=False)
        assert server.recv(timeout=TIMEOUT) == "café"
        assert server.recv(timeout=TIMEOUT) == b"binary"


def test_send_refuses_other_types() -> None:
    with pair() as (_, client):
        with pytest.raises(TypeError, match="mapping"):
            client.send({"a": 1})
        with pytest.raises(TypeError, match="int"):
            client.send(42)  # type: ignore[arg-type]
        client.send("still open")


def test_many_messages_keep_their_order() -> None:
    with pair() as (server, client):
        for i in range(500):
            client.send(str(i))
        assert [server.recv(timeout=TIMEOUT) for _ in range(500)] == [str(i) for i in range(500)]


def test_iteration_yields_until_a_normal_close() -> None:
    with pair() as (server, client):
        for message in ("a", b"b", "c"):
            client.send(message)
        client.close()
        assert list(server) == ["a", b"b", "c"]


def test_iteration_raises_after_an_error_close() -> None:
    with pair() as (server, client):
        client.send("a")
        client.close(1011)
        with pytest.raises(ConnectionClosedError) as raised:
            list(server)
        assert raised.value.code == 1011


# Fragmented messages.


def test_fragmented_messages_are_received_whole() -> None:
    with pair() as (server, client):
        client.send(["frag", "ments"])
        client.send([b"by", b"", b"tes"])
        client.send(piece for piece in ("gene", "rator"))
        assert server.recv(timeout=TIMEOUT) == "fragments"
        assert server.recv(timeout=TIMEOUT) == b"bytes"
        assert server.recv(timeout=TIMEOUT) == "generator"


def test_fragments_with_the_text_option() -> None:
    with pair() as (server, client):
        client.send([b"caf\xc3", b"\xa9"], text=True)
        client.send(["as ", "bytes"], text=False)
        assert server.recv(timeout=TIMEOUT) == "café"
        assert server.recv(timeout=TIMEOUT) == b"as bytes"


def test_empty_iterable_sends_nothing() -> None:
    with pair() as (server, client):
        client.send([])
        client.send("after")
        assert server.recv(timeout=TIMEOUT) == "after"


@pytest.mark.parametrize(
    ("fragments", "error"),
    [(["a", b"b"], "all be str"), (["a", 1], "str or bytes-like")],
)
def test_mixed_fragments_fail_the_connection(fragments: list[object], error: str) -> None:
    with pair() as (server, client):
        with pytest.raises(TypeError, match=error):
            client.send(fragments)  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(timeout=TIMEOUT)
        # RFC 6455 5.4: a fragmented message cannot be abandoned halfway.
        assert raised.value.code == 1011
        with pytest.raises(ConnectionClosed):
            client.send("too late")


def test_first_fragment_of_a_bad_type_leaves_the_connection_usable() -> None:
    with pair() as (server, client):
        with pytest.raises(TypeError):
            client.send([1])  # type: ignore[list-item]
        client.send("fine")
        assert server.recv(timeout=TIMEOUT) == "fine"


def gated(release: threading.Event, *pieces: str) -> Iterator[str]:
    """Yield the first piece, then the others once ``release`` is set."""
    yield pieces[0]
    assert release.wait(TIMEOUT)
    yield from pieces[1:]


def test_other_sends_wait_for_a_fragmented_message() -> None:
    release = threading.Event()
    with pair() as (server, client):
        sender = threading.Thread(target=client.send, args=(gated(release, "a", "b"),))
        sender.start()
        first = server.recv_streaming()
        assert next(first) == "a"
        # The fragmented message is half sent: this send waits for its end.
        other = threading.Thread(target=client.send, args=("whole",))
        other.start()
        release.set()
        assert list(first) == ["b", ""]
        sender.join()
        other.join()
        assert server.recv(timeout=TIMEOUT) == "whole"


def test_sends_from_many_threads_do_not_interleave() -> None:
    with pair() as (server, client):

        def send_all(name: str) -> None:
            for i in range(50):
                client.send([name, str(i), "."])
                client.send(f"{name}{i}")

        threads = [threading.Thread(target=send_all, args=(name,)) for name in "xyz"]
        for thread in threads:
            thread.start()
        received = [server.recv(timeout=TIMEOUT) for _ in range(300)]
        for thread in threads:
            thread.join()
        for name in "xyz":
            mine = [m for m in received if isinstance(m, str) and m.startswith(name)]
            expected = [m for i in range(50) for m in (f"{name}{i}.", f"{name}{i}")]
            assert mine == expected


def test_close_during_a_fragmented_send_fails_the_connection() -> None:
    release = threading.Event()
    with pair() as (server, client):
        errors: list[BaseException] = []

        def send() -> None:
            try:
                client.send(gated(release, "a", "b"))
            except ConnectionClosed as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        stream = server.recv_streaming()
        assert next(stream) == "a"
        closer = threading.Thread(target=client.close)
        closer.start()
        with pytest.raises(ConnectionClosedError) as raised:
            list(stream)
        assert raised.value.code == 1011
        release.set()
        sender.join()
        closer.join()
        assert len(errors) == 1


# Receiving: timeouts, decoding, streaming, concurrency.


def test_recv_timeout() -> None:
    with pair() as (server, _):
        with pytest.raises(TimeoutError):
            server.recv(timeout=0)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            server.recv(timeout=0.05)
        assert time.monotonic() - start >= 0.05


def test_recv_without_waiting_returns_a_message_already_received() -> None:
    with pair() as (server, client):
        client.send("queued")
        # The pong comes after the server read the message before the ping.
        assert client.ping().wait(TIMEOUT)
        assert server.recv(timeout=0) == "queued"


def test_recv_timeout_keeps_the_fragments_received() -> None:
    release = threading.Event()
    with pair() as (server, client):
        sender = threading.Thread(target=client.send, args=(gated(release, "par", "tial"),))
        sender.start()
        assert client.ping().wait(TIMEOUT)  # the first fragment is in
        with pytest.raises(TimeoutError):
            server.recv(timeout=0.01)
        release.set()
        assert server.recv(timeout=TIMEOUT) == "partial"
        sender.join()


def test_recv_decode() -> None:
    with pair() as (server, client):
        client.send("text")
        client.send(b"bytes")
        client.send("both")
        assert server.recv(timeout=TIMEOUT, decode=False) == b"text"
        assert server.recv(timeout=TIMEOUT, decode=True) == "bytes"
        assert server.recv(timeout=TIMEOUT, decode=None) == "both"
        client.send(["frag", "ments"])
        assert server.recv(timeout=TIMEOUT, decode=False) == b"fragments"


def test_recv_decode_of_invalid_utf8_fails_with_1007() -> None:
    with pair() as (server, client):
        client.send(b"\xff\xfe")
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(timeout=TIMEOUT, decode=True)
        assert isinstance(raised.value.__cause__, UnicodeDecodeError)
        with pytest.raises(ConnectionClosedError) as closed:
            client.recv(timeout=TIMEOUT)
        assert closed.value.code == 1007


def test_recv_streaming_yields_fragments_as_they_arrive() -> None:
    release = threading.Event()
    with pair() as (server, client):
        sender = threading.Thread(target=client.send, args=(gated(release, "a", "b", "c"),))
        sender.start()
        stream = server.recv_streaming()
        # The first fragment comes before the others are even sent.
        assert next(stream) == "a"
        release.set()
        assert list(stream) == ["b", "c", ""]
        sender.join()


def test_recv_streaming_of_a_whole_message() -> None:
    with pair() as (server, client):
        client.send(b"whole")
        assert list(server.recv_streaming()) == [b"whole"]
        client.send("text")
        assert list(server.recv_streaming(decode=False)) == [b"text"]


def test_recv_streaming_decode() -> None:
    euro = "€".encode()
    with pair() as (server, client):
        client.send([b"a" + euro[:2], euro[2:] + b"b"])
        assert list(server.recv_streaming(decode=True)) == ["a", "€b", ""]
        client.send(["x", "y"])
        assert list(server.recv_streaming(decode=False)) == [b"x", b"y", b""]


def test_recv_streaming_decode_of_invalid_utf8_fails_with_1007() -> None:
    with pair() as (server, client):
        client.send([b"ok", b"\xff"])
        stream = server.recv_streaming(decode=True)
        assert next(stream) == "ok"
        with pytest.raises(ConnectionClosedError):
            next(stream)


def test_abandoned_recv_streaming_skips_the_rest_of_its_message() -> None:
    with pair() as (server, client):
        client.send(["one", "two", "three"])
        client.send("next")
        for fragment in server.recv_streaming():
            assert fragment == "one"
            break
        assert server.recv(timeout=TIMEOUT) == "next"


def test_second_receiver_gets_concurrency_error() -> None:
    release = threading.Event()
    with pair() as (server, client):
        sender = threading.Thread(target=client.send, args=(gated(release, "a", "b"),))
        sender.start()
        stream = server.recv_streaming()
        assert next(stream) == "a"
        with pytest.raises(ConcurrencyError):
            server.recv()
        with pytest.raises(ConcurrencyError):
            next(server.recv_streaming())
        release.set()
        assert list(stream) == ["b", ""]
        sender.join()


def test_recv_in_another_thread_gets_concurrency_error() -> None:
    with pair() as (server, client):
        result: list[object] = []
        receiver = threading.Thread(target=lambda: result.append(server.recv(timeout=TIMEOUT)))
        receiver.start()
        # Wait until the receiver is in recv(): a second call then fails.
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                server.recv(timeout=0)
            except ConcurrencyError:
                break
            except TimeoutError:
                assert time.monotonic() < deadline
        client.send("for the first")
        receiver.join()
        assert result == ["for the first"]


def test_recv_on_a_closed_connection() -> None:
    with pair() as (server, client):
        client.close()
        with pytest.raises(ConnectionClosedOK):
            server.recv(timeout=TIMEOUT)
        with pytest.raises(ConnectionClosedOK):
            server.recv(timeout=TIMEOUT)
        with pytest.raises(ConnectionClosedOK):
            client.recv()
        with pytest.raises(ConnectionClosedOK):
            next(client.recv_streaming())


# Control frames.


def test_ping_event_is_set_by_the_pong() -> None:
    with pair() as (server, client):
        pong = client.ping()
        assert pong.wait(TIMEOUT)
        assert client.latency > 0
        assert server.ping("text data").wait(TIMEOUT)
        assert server.ping(b"bytes data").wait(TIMEOUT)


def test_ping_with_data_awaiting_its_pong() -> None:
    with pair() as (server, client):
        # The server answers only when it reads: keep it from reading.
        server.send("hold")
        with server._lock:
            pong = client.ping(b"same")
            with pytest.raises(ConcurrencyError):
                client.ping(b"same")
        assert pong.wait(TIMEOUT)
        assert client.recv(timeout=TIMEOUT) == "hold"


def test_ping_data_types() -> None:
    with pair() as (_, client):
        with pytest.raises(TypeError):
            client.ping(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="125"):
            client.ping(bytes(126))
        with pytest.raises(TypeError):
            client.pong(42)  # type: ignore[arg-type]


def test_ping_ack_on_close() -> None:
    opened: list[ServerConnection] = []
    events: list[threading.Event] = []
    ready = threading.Event()

    def handler(ws: ServerConnection) -> None:
        opened.append(ws)
        events.append(ws.ping(b"kept"))
        events.append(ws.ping(b"acked", ack_on_close=True))
        ready.set()
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)

    # The raw client never answers the pings; it closes.
    with running(handler) as server, RawClient.connect(server) as raw:
        assert ready.wait(TIMEOUT)
        raw.send(client_frame(CLOSE, close_payload(1000)))
        raw.read_until_closed()
        assert opened[0].wait_closed(TIMEOUT)
        assert not events[0].is_set()
        assert events[1].is_set()


def test_unsolicited_pong() -> None:
    ready = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.pong("heartbeat")
        ready.set()
        ws.recv(timeout=TIMEOUT)

    with running(handler) as server, RawClient.connect(server) as raw:
        assert ready.wait(TIMEOUT)
        raw.send(client_frame(CLOSE, close_payload(1000)))
        frames = raw.read_until_closed()
    assert frames[0] == (0x8A, PONG, b"heartbeat")
    assert frames[-1][1] == CLOSE


def test_pings_of_the_peer_are_answered_while_the_application_does_not_read() -> None:
    with pair() as (server, client):
        server.send("not read by the client")
        for _ in range(3):
            assert client.ping().wait(TIMEOUT)
        assert client.recv(timeout=TIMEOUT) == "not read by the client"


# Closing.


def test_close_code_and_reason_reach_the_peer() -> None:
    with pair() as (server, client):
        assert client.close_code is None and client.close_reason is None
        client.close(4000, "bye")
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(timeout=TIMEOUT)
        assert raised.value.code == 4000
        assert raised.value.reason == "bye"
        assert server.close_code == 4000
        assert server.close_reason == "bye"
        # The server echoed the code.
        assert client.close_code == 4000
        assert client.state is CLOSED


def test_close_is_idempotent_and_from_any_thread() -> None:
    with pair() as (server, client):
        closer = threading.Thread(target=client.close)
        closer.start()
        with pytest.raises(ConnectionClosedOK):
            client.recv(timeout=TIMEOUT)
        closer.join()
        client.close()
        assert client.wait_closed(0)
        with pytest.raises(ConnectionClosedOK):
            server.recv(timeout=TIMEOUT)
        server.close()


def test_close_with_an_invalid_code() -> None:
    with pair() as (_, client):
        with pytest.raises(ValueError, match="close code"):
            client.close(999)
        assert client.state is OPEN


def test_messages_received_before_close_are_still_returned() -> None:
    with pair() as (server, client):
        for i in range(3):
            client.send(str(i))
        client.close()
        assert [server.recv(timeout=TIMEOUT) for _ in range(3)] == ["0", "1", "2"]
        with pytest.raises(ConnectionClosedOK):
            server.recv(timeout=TIMEOUT)


def test_send_after_close() -> None:
    with pair() as (server, client):
        client.close()
        with pytest.raises(ConnectionClosedOK):
            client.send("late")
        with pytest.raises(ConnectionClosedOK):
            client.ping()
        with pytest.raises(ConnectionClosedOK):
            client.pong()
        with pytest.raises(ConnectionClosedOK):
            server.recv(timeout=TIMEOUT)
        with pytest.raises(ConnectionClosedOK):
            server.send("late")


def test_server_closes_tcp_first_so_the_client_does_not_wait() -> None:
    with pair(client_close_timeout=TIMEOUT) as (_, client):
        start = time.monotonic()
        client.close()
        assert time.monotonic() - start < TIMEOUT / 2


def test_close_times_out_when_the_peer_does_not_answer() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        accepted: list[socket.socket] = []

        def raw_server() -> None:
            sock, _ = listener.accept()
            accepted.append(sock)
            sock.sendall(upgrade_response(read_head(sock)))

        thread = threading.Thread(target=raw_server)
        thread.start()
        with connect(f"ws://127.0.0.1:{port}/", close_timeout=0.1, ping_interval=None) as ws:
            thread.join()
        # No Close frame came back: 1006.
        assert ws.close_code == 1006
        with pytest.raises(ConnectionClosedError):
            ws.recv()
        accepted[0].close()


def test_context_manager_closes_with_1011_on_error() -> None:
    with running() as server:
        with pytest.raises(RuntimeError), connect(url(server)) as ws:
            raise RuntimeError("boom")
        assert ws.state is CLOSED
        assert ws.protocol.close_sent is not None
        assert ws.protocol.close_sent.code == 1011


def test_wait_closed_with_a_timeout() -> None:
    with pair() as (server, client):
        assert not client.wait_closed(0.01)
        client.close()
        assert client.wait_closed(TIMEOUT)
        assert server.wait_closed(TIMEOUT)


# Protocol errors.


def test_messages_before_a_protocol_error_come_first(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    received: list[object] = []
    got_first = threading.Event()
    answered = threading.Event()

    def handler(ws: ServerConnection) -> None:
        received.append(ws.recv(timeout=TIMEOUT))
        got_first.set()
        ws.send("answer")
        answered.set()
        try:
            ws.recv(timeout=TIMEOUT)
        except ConnectionClosedError as exc:
            received.append(exc.sent.code if exc.sent else None)

    with running(handler) as server, RawClient.connect(server) as raw:
        # A message and a broken frame in one write.
        raw.send(client_frame(TEXT, b"first") + client_frame(TEXT, b"bad", rsv=2))
        assert answered.wait(TIMEOUT)
        frames = raw.read_until_closed()
    # Strict: the answer goes out before the Close frame.
    assert [opcode for _, opcode, _ in frames] == [TEXT, CLOSE]
    assert frames[1][2][:2] == (1002).to_bytes(2, "big")
    assert received == ["first", 1002]
    assert "peer broke the protocol: reserved bits must be 0; failing with close code 1002" in (
        caplog.text
    )


def test_protocol_error_alone_fails_at_once() -> None:
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        done.wait(TIMEOUT)  # never reads

    with running(handler) as server, RawClient.connect(server) as raw:
        raw.send(client_frame(PING, bytes(126)))
        frames = raw.read_until_closed()
        done.set()
    assert frames == [(0x88, CLOSE, (1002).to_bytes(2, "big") + b"control frame too long")]


def test_protocol_error_after_messages_not_read_fails_after_close_timeout() -> None:
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        done.wait(TIMEOUT)

    with (
        running(handler, close_timeout=0.05) as server,
        RawClient.connect(server) as raw,
    ):
        raw.send(client_frame(TEXT, b"unread") + client_frame(0x3))
        frames = raw.read_until_closed()
        done.set()
    assert [opcode for _, opcode, _ in frames] == [CLOSE]
    assert frames[0][2][:2] == (1002).to_bytes(2, "big")


@pytest.mark.parametrize("fragmented", [False, True])
def test_message_over_max_size_fails_with_1009(fragmented: bool) -> None:
    with pair(max_size=1000) as (server, client):
        message = "x" * 1001
        client.send([message[:500], message[500:]] if fragmented else message)
        with pytest.raises(ConnectionClosedError) as raised:
            server.recv(timeout=TIMEOUT)
        assert raised.value.sent is not None
        assert raised.value.sent.code == 1009
        with pytest.raises(ConnectionClosedError) as closed:
            client.recv(timeout=TIMEOUT)
        assert closed.value.code == 1009


def test_invalid_utf8_fails_with_1007() -> None:
    with running() as server, RawClient.connect(server) as raw:
        raw.send(client_frame(TEXT, b"\xff"))
        frames = raw.read_until_closed()
    assert frames[-1][2][:2] == (1007).to_bytes(2, "big")


# Limits.


def flood(raw: RawClient, frame: bytes, start: int = 0, limit: int = 1 << 30) -> int:
    """Write ``frame`` over and over, from offset ``start`` in it, without blocking
    until the socket is full; return the count."""
    raw.sock.setblocking(False)
    view = memoryview(frame)
    sent = 0
    try:
        while sent < limit:
            sent += raw.sock.send(view[(start + sent) % len(frame) :])
    except BlockingIOError:
        pass
    finally:
        view.release()
    return sent


def test_reading_stops_when_max_queue_is_reached() -> None:
    opened: list[ServerConnection] = []
    ready = threading.Event()
    drain = threading.Event()
    received: list[int] = []

    def handler(ws: ServerConnection) -> None:
        opened.append(ws)
        ready.set()
        assert drain.wait(TIMEOUT)
        try:
            for message in ws:
                received.append(len(message))
        except ConnectionClosedError:
            received.append(-1)

    with running(handler, max_queue=4, max_size=None) as server:
        with RawClient.connect(server) as raw:
            assert ready.wait(TIMEOUT)
            # The handler does not read: past 4 queued messages nobody reads
            # the socket, and the writes stop once the kernel buffers are full.
            frame = client_frame(BINARY, bytes(65536))
            connection = opened[0]
            deadline = time.monotonic() + TIMEOUT
            sent = 0
            while True:
                sent += flood(raw, frame, sent)
                with connection._lock:
                    if connection._messages.paused:
                        break
                assert time.monotonic() < deadline
                wait_for(raw.sock, select.POLLOUT, 0.01)
            sent += flood(raw, frame, sent)
            # Paused: nothing drains the socket however long the client waits.
            assert not wait_for(raw.sock, select.POLLOUT, 0.05)
            assert sent < 1 << 30
            with connection._lock:
                assert connection._messages.paused
                assert len(connection._messages) == 4
            # Reading resumes as the application drains the queue.
            drain.set()
        # The raw client left mid-frame: the handler gets ConnectionClosedError.
    # Every message, then the end: the raw client left mid-frame.
    assert len(received) > 5
    assert set(received[:-1]) == {65536}
    assert received[-1] == -1


def test_max_queue_high_and_low() -> None:
    with pair(max_queue=(2, 1)) as (server, client):
        for i in range(10):
            client.send(str(i))
        assert [server.recv(timeout=TIMEOUT) for _ in range(10)] == [str(i) for i in range(10)]


def test_reading_stops_while_pongs_wait_for_the_socket() -> None:
    # A peer that sends Pings without reading the Pongs: once write_limit bytes
    # of Pongs wait, the server stops reading, and the peer's writes block.
    opened: list[ServerConnection] = []
    ready = threading.Event()

    def handler(ws: ServerConnection) -> None:
        opened.append(ws)
        ready.set()
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=TIMEOUT)

    with running(handler, write_limit=4096) as server:
        with RawClient.connect(server) as raw:
            assert ready.wait(TIMEOUT)
            ping = client_frame(PING, bytes(125))
            deadline = time.monotonic() + TIMEOUT
            sent = 0
            while True:
                sent += flood(raw, ping, sent)
                with opened[0]._lock:
                    if opened[0]._write_pending() > 4096:
                        break
                assert time.monotonic() < deadline
                wait_for(raw.sock, select.POLLOUT, 0.01)
            sent += flood(raw, ping, sent)
            # Nothing drains the socket any more.
            assert not wait_for(raw.sock, select.POLLOUT, 0.05)
            assert sent < 1 << 30


# Keepalive.


def test_keepalive_pings_and_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    with (
        running(ping_interval=0.02, ping_timeout=0.02) as server,
        RawClient.connect(server) as raw,
    ):
        # The raw client never answers: a Ping, then a Close frame with 1011.
        frames = raw.read_until_closed()
    assert [opcode for _, opcode, _ in frames] == [PING, CLOSE]
    assert frames[1][2] == (1011).to_bytes(2, "big") + b"keepalive ping timeout"
    assert "no pong to keepalive ping; closing" in caplog.text


def test_keepalive_pings_go_on_while_answered() -> None:
    with (
        running(ping_interval=0.01, ping_timeout=TIMEOUT) as server,
        RawClient.connect(server) as raw,
    ):
        data = b""
        pings = 0
        while pings < 3:
            chunk = raw.sock.recv(4096)
            assert chunk
            data += chunk
            # Answer each Ping (2-byte header, 4 bytes of payload, unmasked).
            while len(data) >= 6:
                assert data[0] == 0x89 and data[1] == 4
                raw.send(client_frame(PONG, data[2:6]))
                data = data[6:]
                pings += 1
        raw.send(client_frame(CLOSE, close_payload(1000)))
        raw.read_until_closed()


def test_client_keepalive_measures_latency() -> None:
    with pair(client_ping_interval=0.01) as (_, client):
        deadline = time.monotonic() + TIMEOUT
        while client.latency == 0:
            with pytest.raises(TimeoutError):
                client.recv(timeout=0.01)
            assert time.monotonic() < deadline
        assert client.latency > 0


# Properties.


def test_connection_properties() -> None:
    with pair(subprotocols=["chat"], client_subprotocols=["chat"]) as (server, client):
        assert server.state is OPEN
        assert server.subprotocol == client.subprotocol == "chat"
        assert server.remote_address == client.local_address
        assert server.local_address == client.remote_address
        assert server.request is not None and client.request is not None
        assert server.request.path == client.request.path == "/"
        assert server.response is not None and client.response is not None
        assert client.response.status_code == 101
        assert server.id != client.id
        assert server.id == server.id
        assert server.logger.name == "portside.server"
        assert client.logger.name == "portside.client"
        assert isinstance(client.socket, socket.socket)
        assert READ_LEASE > 0


# Less common paths, reached by holding the connection's own locks or state.


def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait for a state no event announces (the connection's internals)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline
        threading.Event().wait(0.001)


def test_recv_waits_for_the_background_thread_to_hand_the_socket_over() -> None:
    with pair() as (server, client):
        # Not called recv() for a while: the background thread reads.
        wait_until(lambda: server._reader is _BACKGROUND)
        with pytest.raises(TimeoutError):
            server.recv(timeout=0.001)
        client.send("after the handover")
        assert server.recv(timeout=TIMEOUT) == "after the handover"


def test_background_thread_sleeps_while_recv_blocks_and_wakes_after() -> None:
    with pair() as (server, client):
        results: list[object] = []
        receiver = threading.Thread(target=lambda: results.append(server.recv(timeout=TIMEOUT)))
        receiver.start()
        wait_until(lambda: server._deep_sleep)
        client.send("wake up")
        receiver.join()
        assert results == ["wake up"]
        # Back from the long recv(), the background thread answers pings again.
        assert client.ping().wait(TIMEOUT)


def test_direct_read_with_decode() -> None:
    with pair() as (server, client):
        client.send("text")
        assert server.recv(timeout=None, decode=False) == b"text"


def test_bytes_from_the_handshake_are_not_lost() -> None:
    received: list[object] = []

    def handler(ws: ServerConnection) -> None:
        received.extend(ws)

    with running(handler) as server, RawClient.connect(server, handshake=False) as raw:
        host, port = server.socket.getsockname()[:2]
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        # The request, a message and a Close frame in one write.
        raw.send(request + client_frame(TEXT, b"early") + client_frame(CLOSE, close_payload(1000)))
        assert raw.read_head().startswith(b"HTTP/1.1 101")
        frames = raw.read_until_closed()
    assert received == ["early"]
    assert frames == [(0x88, CLOSE, close_payload(1000))]


def test_subclasses_of_str_and_bytes_are_messages() -> None:
    class Text(str):
        pass

    class Binary(bytes):
        pass

    with pair() as (server, client):
        client.send(Text("text"))
        client.send(Binary(b"binary"))
        assert server.recv(timeout=TIMEOUT) == "text"
        assert server.recv(timeout=TIMEOUT) == b"binary"


def test_send_while_closing_raises() -> None:
    with pair() as (server, client):
        client._start_close(1000, "")
        # Error or OK, depending on whether the server's Close frame is in yet.
        with pytest.raises(ConnectionClosed):
            client.send("late")
        with pytest.raises(ConnectionClosedOK):
            server.recv(timeout=TIMEOUT)
        assert client.wait_closed(TIMEOUT)


def test_frames_queued_meanwhile_go_out_after_the_message() -> None:
    with pair() as (server, client):
        # Hold the server's write lock: the Pong answering this Ping waits.
        with server._write_lock:
            pong = client.ping()
            wait_until(lambda: bool(server._outq))
        assert not pong.is_set()
        server.send("then the pong")
        assert pong.wait(TIMEOUT)
        assert client.recv(timeout=TIMEOUT) == "then the pong"
        # And with a fragmented message.
        with server._write_lock:
            pong = client.ping()
            wait_until(lambda: bool(server._outq))
        server.send(["a", "b"])
        assert pong.wait(TIMEOUT)
        assert client.recv(timeout=TIMEOUT) == "ab"


def test_failing_a_closed_connection_does_nothing_and_long_reasons_are_cut() -> None:
    with pair() as (server, client):
        with server._lock:
            server._fail(1011, "é" * 100)
        with pytest.raises(ConnectionClosedError) as raised:
            client.recv(timeout=TIMEOUT)
        assert raised.value.code == 1011
        assert raised.value.reason.endswith("...")
        assert len(raised.value.reason.encode()) <= 123
        with server._lock:
            server._fail(1002, "again")  # nothing happens
        assert server.protocol.close_sent is not None
        assert server.protocol.close_sent.code == 1011


def reset(raw: RawClient) -> None:
    """Close with a TCP reset."""
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.sock.close()


def receive(ws: ServerConnection) -> None:
    ws.recv(timeout=TIMEOUT)


def send_forever(ws: ServerConnection) -> None:
    while True:
        ws.send(bytes(65536))


@pytest.mark.parametrize(
    ("act", "cause"),
    [(receive, ConnectionResetError), (send_forever, OSError)],
    ids=["receiving", "sending"],
)
def test_connection_reset(act: Callable[[ServerConnection], None], cause: type[OSError]) -> None:
    errors: list[ConnectionClosedError] = []
    ready = threading.Event()
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ready.set()
        try:
            act(ws)
        except ConnectionClosedError as exc:
            errors.append(exc)
        done.set()

    with running(handler) as server:
        raw = RawClient.connect(server)
        assert ready.wait(TIMEOUT)
        reset(raw)
        assert done.wait(TIMEOUT)
    assert errors[0].code == 1006
    assert isinstance(errors[0].__cause__, cause)


def test_pongs_the_socket_did_not_take_are_written_before_the_next_message() -> None:
    opened: list[ServerConnection] = []
    ready = threading.Event()
    go = threading.Event()

    def handler(ws: ServerConnection) -> None:
        opened.append(ws)
        ready.set()
        assert go.wait(TIMEOUT)
        ws.send("after the pongs")  # blocks until the raw client reads
        for _ in ws:
            pass

    with running(handler, write_limit=4096) as server, RawClient.connect(server) as raw:
        assert ready.wait(TIMEOUT)
        # Pings the raw client does not read the Pongs of, until the server
        # holds Pongs the socket did not take.
        ping = client_frame(PING, bytes(125))
        sent = 0
        while True:
            sent += flood(raw, ping, sent)
            with opened[0]._lock:
                if opened[0]._unsent_size:
                    break
            wait_for(raw.sock, select.POLLOUT, 0.01)
        go.set()
        raw.sock.setblocking(True)
        data: list[bytes] = []
        reader = threading.Thread(target=lambda: data.append(raw.read_all()))
        reader.start()
        # Complete the Ping in progress, then close.
        remainder = (len(ping) - sent % len(ping)) % len(ping)
        raw.send(ping[len(ping) - remainder :] + client_frame(CLOSE, close_payload(1000)))
        reader.join()
    opcodes = [opcode for _, opcode, _ in unmask_frames(data[0])]
    # The Pongs the socket did not take come before the message.
    assert opcodes.index(TEXT) > 0
    assert set(opcodes[: opcodes.index(TEXT)]) == {PONG}
    assert opcodes[-1] == CLOSE
