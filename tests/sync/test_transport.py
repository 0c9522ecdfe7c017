"""Blocking socket I/O: plain sockets and TLS over memory BIOs, from several threads."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from portside.sync.transport import TLSTransport, Transport
from tests.sync.helpers import TIMEOUT
from tests.sync.test_server import tls_contexts


@pytest.fixture
def plain_pair() -> Iterator[tuple[Transport, Transport]]:
    a, b = socket.socketpair()
    left, right = Transport(a), Transport(b)
    yield left, right
    left.close()
    right.close()


@pytest.fixture
def tls_pair() -> Iterator[tuple[TLSTransport, TLSTransport]]:
    server_context, client_context = tls_contexts()
    a, b = socket.socketpair()
    server = TLSTransport(a, server_context, server_side=True)
    client = TLSTransport(b, client_context, server_side=False, server_hostname="localhost")
    thread = threading.Thread(target=server.handshake, args=(TIMEOUT,))
    thread.start()
    client.handshake(TIMEOUT)
    thread.join()
    yield server, client
    server.close()
    client.close()


def read_exactly(transport: Transport, size: int) -> bytes:
    data = bytearray()
    buffer = memoryview(bytearray(65536))
    while len(data) < size:
        count = transport.recv_into(buffer, TIMEOUT)
        assert count, "end of stream"
        data += buffer[:count]
    return bytes(data)


def encoded(transport: Transport, frames: list[bytes]) -> list[bytes]:
    with transport.lock:
        return transport.encode(frames)


def test_plain_send_of_many_buffers(plain_pair: tuple[Transport, Transport]) -> None:
    left, right = plain_pair
    pieces = [os.urandom(n) for n in (1, 1000, 70000, 0, 5)]
    left.send(pieces)
    assert read_exactly(right, sum(map(len, pieces))) == b"".join(pieces)
    assert not left.secure
    assert not left.buffered()
    assert left.encode(pieces) is pieces


def test_plain_send_nowait_returns_what_the_socket_did_not_take(
    plain_pair: tuple[Transport, Transport],
) -> None:
    left, right = plain_pair
    data = [os.urandom(1 << 20) for _ in range(16)]
    rest = left.send_nowait(data)
    assert rest  # 16 MiB do not fit in the socket buffers
    sent = sum(map(len, data)) - sum(map(len, rest))
    reader = threading.Thread(target=read_exactly, args=(right, sum(map(len, data))))
    reader.start()
    assert left.wait_writable(TIMEOUT)
    left.send(rest)
    reader.join()
    assert sent > 0


def test_plain_send_with_a_timeout(plain_pair: tuple[Transport, Transport]) -> None:
    left, _ = plain_pair
    with pytest.raises(TimeoutError):
        left.send([bytes(64 << 20)], timeout=0.01)


def test_recv_into_timeout_and_end_of_stream(plain_pair: tuple[Transport, Transport]) -> None:
    left, right = plain_pair
    buffer = memoryview(bytearray(10))
    with pytest.raises(TimeoutError):
        right.recv_into(buffer, 0)
    left.shutdown()
    assert right.recv_into(buffer, TIMEOUT) == 0
    left.shutdown()  # twice: not connected any more, no error


def test_shutdown_read_wakes_a_blocked_reader(plain_pair: tuple[Transport, Transport]) -> None:
    _, right = plain_pair
    results: list[int] = []
    reader = threading.Thread(
        target=lambda: results.append(right.recv_into(memoryview(bytearray(10))))
    )
    reader.start()
    right.shutdown_read()
    reader.join()
    assert results == [0]


def test_extra_info(plain_pair: tuple[Transport, Transport]) -> None:
    left, _ = plain_pair
    info = left.extra()
    assert info["sockname"] is not None
    closed = Transport(socket.socket())
    assert closed.extra() == {"sockname": ("0.0.0.0", 0), "peername": None}
    closed.close()


def test_tls_both_ways(tls_pair: tuple[TLSTransport, TLSTransport]) -> None:
    server, client = tls_pair
    assert server.secure and client.secure
    assert client.extra()["cipher"] is not None
    message = os.urandom(300_000)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_exactly(server, len(message))))
    reader.start()
    client.send(encoded(client, [message[:1000], message[1000:]]))
    reader.join()
    assert received == [message]
    server.send(encoded(server, [b"pong"]))
    assert read_exactly(client, 4) == b"pong"


def test_tls_reads_and_writes_from_two_threads(
    tls_pair: tuple[TLSTransport, TLSTransport],
) -> None:
    # Each side writes 8 MiB while it reads 8 MiB: reads and writes of one
    # SSL object run in two threads at once, which SSLSocket cannot do.
    server, client = tls_pair
    size = 8 << 20
    digests: dict[str, str] = {}

    def write(transport: TLSTransport, seed: bytes) -> None:
        chunk = hashlib.sha256(seed).digest() * 2048  # 64 KiB
        for _ in range(size // len(chunk)):
            transport.send(encoded(transport, [chunk]))

    def read(transport: TLSTransport, name: str) -> None:
        digests[name] = hashlib.sha256(read_exactly(transport, size)).hexdigest()

    threads = [
        threading.Thread(target=write, args=(server, b"s")),
        threading.Thread(target=write, args=(client, b"c")),
        threading.Thread(target=read, args=(server, "at server")),
        threading.Thread(target=read, args=(client, "at client")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {
        name: hashlib.sha256(hashlib.sha256(seed).digest() * 2048 * (size // 65536)).hexdigest()
        for name, seed in (("at server", b"c"), ("at client", b"s"))
    }
    assert digests == expected


def test_tls_small_reads_leave_plaintext_buffered(
    tls_pair: tuple[TLSTransport, TLSTransport],
) -> None:
    server, client = tls_pair
    client.send(encoded(client, [b"x" * 1000]))
    buffer = memoryview(bytearray(100))
    assert server.recv_into(buffer, TIMEOUT) == 100
    assert server.buffered()
    total = 100
    while server.buffered():
        total += server.recv_into(buffer, 0)
    assert total == 1000
    with pytest.raises(TimeoutError):
        server.recv_into(buffer, 0)
    assert not server.buffered()


def test_tls_close_notify_ends_the_stream(tls_pair: tuple[TLSTransport, TLSTransport]) -> None:
    server, client = tls_pair
    with server.lock:
        server.close_output()
        assert server.has_output()
        data = server.encode([])
    server.send(data)
    assert client.recv_into(memoryview(bytearray(10)), TIMEOUT) == 0


def test_tls_peer_closing_tcp_ends_the_stream(tls_pair: tuple[TLSTransport, TLSTransport]) -> None:
    server, client = tls_pair
    server.shutdown()
    assert client.recv_into(memoryview(bytearray(10)), TIMEOUT) == 0


def test_tls_handshake_with_a_silent_peer_times_out() -> None:
    _, client_context = tls_contexts()
    a, b = socket.socketpair()
    client = TLSTransport(a, client_context, server_side=False, server_hostname="localhost")
    with pytest.raises(TimeoutError):
        client.handshake(0.01)
    client.close()
    b.close()


def test_tls_handshake_with_a_peer_that_leaves() -> None:
    _, client_context = tls_contexts()
    a, b = socket.socketpair()
    client = TLSTransport(a, client_context, server_side=False, server_hostname="localhost")
    b.close()
    with pytest.raises(OSError, match=r"closed during the TLS handshake|reset|Broken pipe"):
        client.handshake(TIMEOUT)
    client.close()


def test_tls_handshake_with_garbage() -> None:
    server_context, _ = tls_contexts()
    a, b = socket.socketpair()
    server = TLSTransport(a, server_context, server_side=True)
    b.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ssl.SSLError):
        server.handshake(TIMEOUT)
    server.close()
    b.close()
