"""Hostile peers: each case of docs/security.md, and the answer it gets.

A slow reader, a fast sender, a stalled TLS handshake, a stalled close, a
handshake flood, a compression bomb, a frame header that lies: each gets its
close code or its timeout, one log line and no traceback, and the memory it
costs stays bounded. Behaviour is checked on a server in this process; memory
on a server in a process of its own (tests/asyncio/server_process.py), so that
the clients' memory does not count.

The tests marked ``slow`` (a thousand peers, fifty thousand handshakes) run
once, with the C accelerators: ``make test`` leaves them out of its pure-Python
and uvloop passes (``-m "not slow"``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import pathlib
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

import portside
from tests.asyncio.server_process import ServerProcess
from tests.framing import client_frame, unmask_frames
from tests.sanitizer import not_under_sanitizer

CERT = pathlib.Path(__file__).with_name("localhost.pem")

# Long enough for a loaded machine: only a server that never acts waits this
# long. A timeout under test is checked by what closed the connection and by
# its lower bound (not at once), not by how soon after it the loop got to run:
# CI runs two jobs at once on two cores.
TIMEOUT = 10.0

BINARY, CLOSE = 2, 8

MiB = 2**20


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that completed the opening handshake, driven by hand."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def warm_up(server: ServerProcess) -> None:
    """A connection opened and closed: what the first one allocates once is there."""
    _, writer = await raw_connect(server.port)
    writer.transport.abort()
    await server.wait_for_stats("connections", 0, inverse=True)


async def round_trip(server: ServerProcess) -> None:
    """An echo on a new connection: once it is back, the server has read what
    was sent to it before on other connections (loopback delivers at once, and
    each turn of the event loop reads every socket that is ready)."""
    async with portside.connect(server.url) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"


def announce(length: int, payload: bytes = b"") -> bytes:
    """A masked binary frame's header announcing ``length`` bytes, then ``payload``."""
    return client_frame(BINARY, payload, length=length)[: 14 + len(payload)]


async def read_to_the_end(reader: asyncio.StreamReader) -> bytes:
    """What the server sent until it closed the connection.

    A server that closes a socket with unread bytes in it sends a RST, which the
    reader reports after the bytes received before it (not with read(), which
    would drop them).
    """
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(2**16):
            data += chunk
    return data


def close_code(data: bytes) -> int:
    """The code of the Close frame that ends ``data``, the frames a server sent."""
    frames = unmask_frames(data)
    assert frames, "no frame"
    _, opcode, payload = frames[-1]
    assert opcode == CLOSE, frames[-1]
    code: int = struct.unpack("!H", payload[:2])[0]
    return code


def assert_quiet(log: list[str], expected: str) -> None:
    """Exactly one line of the log is about the case, and nothing went wrong."""
    assert sum(expected in line for line in log) == 1, log
    for line in log:
        assert "Traceback" not in line, log
        assert "Fatal error" not in line, log
        assert not line.startswith(("ERROR", "CRITICAL")), log


# A frame header that lies: memory follows the bytes that came.


async def test_announced_3_gib_leave_the_virtual_size_where_it_was() -> None:
    # Untouched pages are not resident, so RSS alone would not show it; but
    # the allocation is committed, and a few such peers exhaust memory under
    # strict overcommit.
    async with ServerProcess.run(max_size=None) as server:
        await round_trip(server)
        before = server.status()
        _, writer = await raw_connect(server.port)
        writer.write(announce(3 * 2**30, b"a few bytes"))
        await writer.drain()
        await round_trip(server)
        after = server.status()
        growth = after["VmSize"] - before["VmSize"]
        peak_growth = after["VmPeak"] - before["VmPeak"]
        assert growth < 32 * 1024, f"VmSize grew by {growth} KiB"
        assert peak_growth < 32 * 1024, f"VmPeak grew by {peak_growth} KiB"
        writer.close()
        await writer.wait_closed()
        log = await server.stop()
    assert not [line for line in log if "Fatal error" in line or "Traceback" in line], log


@not_under_sanitizer("RLIMIT_AS cannot bound a process whose sanitizer maps terabytes of shadow")
async def test_frame_that_memory_cannot_hold_fails_with_1009() -> None:
    # 2**62 bytes announced, then bytes until the server's memory, limited to
    # 256 MiB more than it uses, cannot hold the frame's buffer any more.
    async with ServerProcess.run(max_size=None, address_space_headroom=256) as server:
        reader, writer = await raw_connect(server.port)
        writer.write(announce(2**62))

        async def stream() -> None:
            chunk = bytes(MiB)
            with contextlib.suppress(ConnectionError):
                for _ in range(2048):  # 2 GiB at most
                    writer.write(chunk)
                    await writer.drain()

        sending = asyncio.create_task(stream())
        data = await read_to_the_end(reader)
        await sending
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert close_code(data) == 1009
        log = await server.stop()
    assert_quiet(log, "does not fit in memory; failing with close code 1009")


# Helpers for the cases below.


@contextlib.asynccontextmanager
async def serving(handler: Any, **kwargs: Any) -> AsyncIterator[portside.Server]:
    kwargs.setdefault("ping_interval", None)
    async with portside.serve(handler, "127.0.0.1", 0, **kwargs) as server:
        yield server


def port_of(server: portside.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def only_connection(server: portside.Server) -> portside.ServerConnection:
    """The server's one connection, once the handshake made it."""
    while not server.connections:
        await asyncio.sleep(0.001)
    (connection,) = server.connections
    return connection


async def slow_reader(
    port: int, rcvbuf: int = 4096
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client with a small receive window that will never read after the handshake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def log_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records), caplog.text
    assert all(r.levelno < logging.ERROR for r in caplog.records), caplog.text


# Slow reader: never reads, its receive window stays full.


async def test_slow_reader_makes_send_wait_within_write_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "portside")
    write_limit = 16_384
    buffered: list[int] = []
    blocked = asyncio.Event()

    async def push(ws: portside.ServerConnection) -> None:
        message = bytes(1024)
        with contextlib.suppress(portside.ConnectionClosed):
            while True:
                sending = asyncio.ensure_future(ws.send(message))
                buffered.append(ws.transport.get_write_buffer_size())
                if not sending.done():
                    await asyncio.sleep(0)
                if not sending.done():
                    blocked.set()  # send() waits: the peer does not read
                await sending

    async with serving(
        push, write_limit=write_limit, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3
    ) as server:
        _, writer = await slow_reader(port_of(server))
        await asyncio.wait_for(blocked.wait(), 10)
        # What the transport holds: up to write_limit, and the message that
        # crossed it; the rest waits in send().
        assert max(buffered) <= write_limit + 1024 + 14
        connection = await only_connection(server)
        # Keepalive pings go unanswered: 1011 after ping_timeout, then the
        # Close frame cannot go out either: aborted after close_timeout.
        await asyncio.wait_for(connection.wait_closed(), TIMEOUT)
        assert connection.protocol.close_sent is not None
        assert connection.protocol.close_sent.code == 1011
        writer.transport.abort()
    assert len(log_lines(caplog, "no pong to keepalive ping")) == 1
    no_traceback(caplog)


@pytest.mark.slow
@not_under_sanitizer("ASan keeps freed memory in quarantine: RSS is not the server's")
async def test_slow_readers_memory_is_bounded() -> None:
    # 1,000 peers that never read, each with a handler sending as fast as it
    # can: each holds write_limit in its transport at most.
    peers, write_limit = 1000, 16_384
    # The kernel's send buffers fixed at 32 KiB: left to TCP autotuning, each
    # takes about 2.8 MiB on loopback before the transport buffers a byte, and
    # the handlers push gigabytes, 1 KiB at a time, before the last peer is
    # paused (minutes on a loaded machine, and how many fit depends on the
    # TCP memory of every other process). That memory is the kernel's, not the
    # server's RSS, which is what this test measures.
    # No keepalive: a peer that never reads never answers a ping either, and on
    # a loaded machine the first peers could be closed (1011, 40 s after they
    # connected) before the last ones are paused.
    async with ServerProcess.run(
        "push", write_limit=write_limit, ping_interval=None, sndbuf=16_384
    ) as server:
        await warm_up(server)
        rss_before, _ = await server.memory()
        writers: list[asyncio.StreamWriter] = []
        try:
            for _ in range(peers):
                writers.append((await slow_reader(server.port))[1])
            stats = await server.wait_for_stats("write_paused", peers, timeout=90)
            rss_after, _ = await server.memory()
            per_peer = (rss_after - rss_before) * 1024 / peers
            assert stats["write_buffered"] <= peers * (write_limit + 1024 + 14)
            # The buffered bytes, plus a connection's own objects (~20 KiB).
            assert per_peer < write_limit + 1024 + 48 * 1024, (
                f"{per_peer:.0f} bytes per slow reader"
            )
        finally:
            # Even when an assertion failed: a thousand sockets left to the
            # garbage collector would fail the tests that run after this one.
            for writer in writers:
                writer.transport.abort()
        await server.wait_for_stats("connections", 0, inverse=True)


# Fast sender: sends faster than the handler reads.


async def test_fast_sender_pauses_reading_at_max_queue() -> None:
    async def never_reads(ws: portside.ServerConnection) -> None:
        await ws.wait_closed()

    async with serving(never_reads, max_queue=4, read_limit=4096, close_timeout=0.2) as server:
        _reader, writer = await raw_connect(port_of(server))
        connection = await only_connection(server)
        frame = client_frame(BINARY, bytes(4000))

        async def flood() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(frame)
                    await writer.drain()

        flooding = asyncio.create_task(flood())
        while not connection._reading_paused:
            await asyncio.sleep(0.001)
        # Reading stopped at max_queue: TCP pushes back on the sender, whose
        # writes pile up on its side.
        assert len(connection._messages or ()) == 4
        await asyncio.sleep(0.1)  # the sender keeps trying; nothing more is read
        assert len(connection._messages or ()) == 4
        assert connection._reading_paused
        flooding.cancel()
        writer.transport.abort()
        # A connection that does not read does not see the reset either: its
        # keepalive ping would (off here), or the server's close, on exit.


@pytest.mark.slow
@not_under_sanitizer("ASan keeps freed memory in quarantine: RSS is not the server's")
async def test_fast_senders_memory_is_bounded() -> None:
    peers, max_queue, size = 1000, 2, 4000
    # No keepalive: these peers never read, so never answer a ping (see above).
    async with ServerProcess.run(
        "idle", max_queue=max_queue, read_limit=4096, close_timeout=0.5, ping_interval=None
    ) as server:
        await warm_up(server)
        rss_before, _ = await server.memory()
        frame = client_frame(BINARY, bytes(size))
        writers: list[asyncio.StreamWriter] = []
        flooding: list[asyncio.Task[None]] = []

        async def flood(writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    writer.write(frame)
                    await writer.drain()

        try:
            for _ in range(peers):
                writers.append((await raw_connect(server.port))[1])
            flooding = [asyncio.create_task(flood(writer)) for writer in writers]
            stats = await server.wait_for_stats("reading_paused", peers, timeout=90)
            rss_after, _ = await server.memory()
            per_peer = (rss_after - rss_before) * 1024 / peers
            assert stats["queued"] == peers * max_queue
            # The queued messages, plus a connection's own objects (~20 KiB).
            assert per_peer < max_queue * size + 48 * 1024, f"{per_peer:.0f} bytes per fast sender"
        finally:
            for task in flooding:
                task.cancel()
            for writer in writers:
                writer.transport.abort()


# Stalled TLS: no ClientHello, or a handshake that stops halfway.


def client_hello() -> bytes:
    """The first flight of a TLS client, as it goes on the wire."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    "sent",
    [b"", "half", "whole"],
    ids=["no-client-hello", "half-a-client-hello", "no-answer-to-the-server-hello"],
)
async def test_stalled_tls_handshake_is_closed_after_open_timeout(sent: Any) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT)
    hello = client_hello()
    data = {b"": b"", "half": hello[: len(hello) // 2], "whole": hello}[sent]
    async with serving(echo, ssl=context, open_timeout=0.3) as server:
        started = asyncio.get_running_loop().time()
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        try:
            writer.write(data)
            # open_timeout closes it: without it, asyncio's ssl_handshake_timeout
            # would, after 60 s.
            await asyncio.wait_for(read_to_the_end(reader), TIMEOUT)
            elapsed = asyncio.get_running_loop().time() - started
            assert elapsed > 0.25, elapsed
        finally:
            writer.close()
        assert not server.connections


# Stalled close: the peer stops mid-frame, or never answers the Close frame.


@pytest.mark.parametrize("mid_frame", [True, False], ids=["stops-mid-frame", "no-close-frame"])
async def test_stalled_close_is_freed_after_close_timeout(
    mid_frame: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "portside")

    async def closes(ws: portside.ServerConnection) -> None:
        await ws.recv()
        await ws.close()

    # The server is done with a connection once its handler has returned, which
    # may be a turn of the loop after the client saw the TCP connection end
    # (uvloop on Python 3.12 runs the client first): wait for that event.
    ended: asyncio.Future[portside.ServerConnection] = asyncio.get_running_loop().create_future()
    async with serving(closes, close_timeout=0.3, on_connection_end=ended.set_result) as server:
        reader, writer = await raw_connect(port_of(server))
        try:
            frame = client_frame(BINARY, b"x" * 100)
            writer.write(frame)
            connection = await only_connection(server)
            if mid_frame:
                writer.write(frame[:50])  # then nothing, ever
            started = asyncio.get_running_loop().time()
            # close_timeout frees it (it logs so, below): nothing else would.
            data = await asyncio.wait_for(read_to_the_end(reader), TIMEOUT)
            elapsed = asyncio.get_running_loop().time() - started
            assert close_code(data) == 1000
            assert connection.closed
            # Not before close_timeout (how much later depends on the machine's load).
            assert elapsed > 0.25, elapsed
            assert await asyncio.wait_for(ended, TIMEOUT) is connection
            assert not server.connections
        finally:
            # Even when an assertion failed: a transport left open when the
            # test's loop closes fails the tests that run after it.
            writer.transport.abort()
    assert len(log_lines(caplog, "closing handshake not finished within close_timeout")) == 1
    no_traceback(caplog)


# Handshake flood: garbage, and handshakes that never finish.

GARBAGE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS on the plain port
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a WebSocket handshake
    b"\x00" * 64,
    b"SSH-2.0-OpenSSH_9.2\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n",  # a header too long
]
HALF = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
# What the server logs of them.
FLOOD_LOG_LINES = (
    "invalid HTTP request",
    "opening handshake failed",
    "opening handshake timed out",
    "response not read within open_timeout",
)


class Flooder(asyncio.Protocol):
    """One flood connection: sends its bytes, then waits for the server to end it."""

    def __init__(self, data: bytes, done: asyncio.Future[None]) -> None:
        self.data = data
        self.done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self.data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


@pytest.mark.slow
async def test_handshake_flood_leaves_well_behaved_clients_served() -> None:
    total, concurrency = 50_000, 400
    async with ServerProcess.run(open_timeout=0.5) as server:
        loop = asyncio.get_running_loop()
        before = await server.connections()
        stop = asyncio.Event()
        round_trips: list[float] = []
        failed = unanswered = 0

        async def one(number: int) -> None:
            nonlocal failed, unanswered
            done = loop.create_future()
            # Source addresses across 127.0.0.0/8: 50,000 connections need
            # more ephemeral ports than one address has.
            source = (f"127.0.{number % 200}.{2 + number % 250}", 0)
            data = [*GARBAGE, HALF][number % (len(GARBAGE) + 1)]
            try:
                transport, _ = await loop.create_connection(
                    lambda: Flooder(data, done), "127.0.0.1", server.port, local_addr=source
                )
            except OSError:
                failed += 1
                return
            try:
                # The server answers garbage with 400 and closes; it aborts
                # half-finished handshakes after open_timeout.
                await asyncio.wait_for(done, 20)
            except asyncio.TimeoutError:
                unanswered += 1
            finally:
                transport.abort()

        numbers = iter(range(total))

        async def flooder() -> None:
            # One of `concurrency` flooders taking the next number in turn, not
            # a task per connection: 50,000 tasks started at once would hold
            # this process's loop for a second or more, and what the
            # well-behaved client measures would be this process, not the server.
            for number in numbers:
                await one(number)

        # Connected before the flood: a handshake started with it could wait on
        # this process (its loop busy with the flood) past the server's
        # open_timeout, and be aborted as it should.
        async with portside.connect(server.url) as ws:

            async def well_behaved() -> None:
                while not stop.is_set():
                    started = loop.time()
                    await ws.send("still there?")
                    assert await ws.recv() == "still there?"
                    round_trips.append(loop.time() - started)
                    await asyncio.sleep(0.01)

            checking = asyncio.create_task(well_behaved())
            try:
                await asyncio.gather(*(flooder() for _ in range(concurrency)))
            finally:
                stop.set()
                await checking
        assert failed < total // 100, f"{failed} flood connections failed to connect"
        assert unanswered == 0, f"the server left {unanswered} flood connections open"
        assert len(round_trips) > 10
        assert max(round_trips) < 2.0, f"a round trip took {max(round_trips):.2f} s in the flood"
        after = await server.wait_for_stats("connections", before, inverse=True)
        assert after["connections"] == before
        # And the server still opens new connections.
        await round_trip(server)
        log = await server.stop()
    # A line for each flood connection, saying what became of it; no warning (a
    # transport left to the garbage collector), no exception ignored, no traceback.
    odd = [
        line
        for line in log
        if not line.startswith("INFO portside.server: ")
        or not any(text in line for text in FLOOD_LOG_LINES)
    ]
    assert not odd, odd[:20]


# Compression bomb.


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]  # RFC 7692 7.2.1: without the empty block's tail


def deflated_zeros(mebibytes: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(2**20)
    out = b"".join(compressor.compress(zeros) for _ in range(mebibytes))
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


async def deflate_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client that negotiated permessage-deflate with the largest windows."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"permessage-deflate" in head
    return reader, writer


@pytest.mark.slow
@not_under_sanitizer("ASan keeps freed memory in quarantine: RSS is not the server's")
async def test_compression_bomb_fails_with_1009_and_bounded_memory() -> None:
    max_size = 2**20
    async with ServerProcess.run("echo", max_size=max_size) as server:
        await round_trip(server)
        rss_before, _ = await server.memory()
        peak_before = server.status()["VmHWM"]
        # 256 MiB of zeros in 250 KiB, in one frame, which inflates past
        # max_size after its first megabyte.
        bomb = deflated_zeros(256)
        reader, writer = await deflate_connect(server.port)
        writer.write(frame_with_rsv1(bomb))
        data = await read_to_the_end(reader)
        assert close_code(data) == 1009
        writer.close()
        rss_after, _ = await server.memory()
        peak_growth = (server.status()["VmHWM"] - peak_before) * 1024
        # The frame as it came (about 1 MiB), what inflated (max_size), and
        # copies on the way: under 4 x max_size, plus zlib's state.
        assert peak_growth < 4 * max_size + ZLIB_STATE, f"peak RSS grew by {peak_growth} bytes"
        assert (rss_after - rss_before) * 1024 < 4 * max_size + ZLIB_STATE
        log = await server.stop()
    assert_quiet(log, "failing with close code 1009")


@pytest.mark.slow
@not_under_sanitizer("ASan keeps freed memory in quarantine: RSS is not the server's")
async def test_largest_windows_cost_the_documented_zlib_state() -> None:
    # Clients that allow the largest windows (15 bits): the server inflates with
    # a 32 KiB window each, and compresses with its own (11 bits by default).
    peers = 200
    async with ServerProcess.run("echo") as server:
        await round_trip(server)
        rss_before, _ = await server.memory()
        clients = [await deflate_connect(server.port) for _ in range(peers)]
        message = frame_with_rsv1(deflated(os.urandom(2048) * 16))
        for _, writer in clients:
            writer.write(message)
        for reader, _ in clients:
            await read_frame(reader)
        rss_after, _ = await server.memory()
        per_peer = (rss_after - rss_before) * 1024 / peers
        # zlib's state (ZLIB_STATE) and a connection's own objects (~20 KiB).
        assert per_peer < ZLIB_STATE + 48 * 1024, f"{per_peer:.0f} bytes per connection"
        for _, writer in clients:
            writer.transport.abort()


#: zlib's memory for one connection with the largest windows: inflate, 32 KiB of
#: window and 7 KiB of state; deflate at the server's defaults (11 bits, memory
#: level 4), (1 << 13) + (1 << 13) bytes and 6 KiB of state (zlib's zconf.h).
ZLIB_STATE = (1 << 15) + 7 * 1024 + (1 << 13) + (1 << 13) + 6 * 1024


def frame_with_rsv1(payload: bytes) -> bytes:
    """A masked binary frame with RSV1 set: a compressed message (RFC 7692 6)."""
    frame = bytearray(client_frame(BINARY, payload))
    frame[0] |= 0x40
    return bytes(frame)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One unmasked frame from the server; its payload."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    return await reader.readexactly(length)
