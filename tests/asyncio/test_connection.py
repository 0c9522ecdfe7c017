"""The connection API over real loopback sockets: messages, flow control, closing."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import pathlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import portside
import portside.asyncio.connection as connection_module
from portside.protocol import State
from portside.protocol.reader import READ_ROOM
from tests.asyncio.helpers import RawClient, echo, running, url
from tests.framing import client_frame, close_payload, server_frame, upgrade_response

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


# Messages.


async def test_echo_text_and_binary() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        for message in ("", "hello", "☕" * 1000, b"", b"\x00\xff", bytes(200_000)):
            await ws.send(message)
            assert await ws.recv() == message
        await ws.send(bytearray(b"ba"))
        assert await ws.recv() == b"ba"
        await ws.send(memoryview(b"xmv")[1:])
        assert await ws.recv() == b"mv"


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_fragmented_sends(compression: str | None) -> None:
    async def agen() -> AsyncIterator[str]:
        for part in ("async ", "frag", "ments"):
            yield part

    async with running(compression=compression) as server:
        async with portside.connect(url(server), compression=compression) as ws:
            await ws.send(["a", "b", "c"])
            assert await ws.recv() == "abc"
            await ws.send([b"x", bytearray(b"y"), memoryview(b"z")])
            assert await ws.recv() == b"xyz"
            await ws.send(agen())
            assert await ws.recv() == "async fragments"
            await ws.send([])
            await ws.send("after empty")
            assert await ws.recv() == "after empty"


async def test_fragment_type_errors_fail_the_connection() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        with pytest.raises(TypeError, match="all be str"):
            await ws.send(["text", b"bytes"])
        with pytest.raises(portside.ConnectionClosedError):
            await ws.recv()
        assert ws.protocol.close_sent is not None
        assert ws.protocol.close_sent.code == 1011


async def test_first_fragment_of_wrong_type() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        with pytest.raises(TypeError, match="fragments must be str or bytes-like"):
            await ws.send([1])  # type: ignore[list-item]
        await ws.send("still open")
        assert await ws.recv() == "still open"


async def test_send_rejects_other_types() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        with pytest.raises(TypeError, match="dict"):
            await ws.send({"a": 1})
        with pytest.raises(TypeError, match="unsupported type: int"):
            await ws.send(42)  # type: ignore[arg-type]


async def test_sends_wait_for_a_fragmented_message() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[str]:
        yield "first "
        await release.wait()
        yield "second"

    async with running() as server, portside.connect(url(server)) as ws:
        fragmented = asyncio.ensure_future(ws.send(slow()))
        other = asyncio.ensure_future(ws.send("other"))
        await asyncio.sleep(0)
        assert not other.done()
        release.set()
        await asyncio.gather(fragmented, other)
        assert [await ws.recv(), await ws.recv()] == ["first second", "other"]


async def test_async_for_ends_on_normal_closure() -> None:
    async def talk(ws: portside.ServerConnection) -> None:
        for i in range(3):
            await ws.send(str(i))

    async with running(talk) as server, portside.connect(url(server)) as ws:
        assert [message async for message in ws] == ["0", "1", "2"]
        assert (ws.close_code, ws.close_reason) == (1000, "")
        with pytest.raises(portside.ConnectionClosedOK):
            await ws.recv()


async def test_async_for_raises_on_error_closure() -> None:
    async def fail(ws: portside.ServerConnection) -> None:
        await ws.close(1011, "broken")

    async with running(fail) as server, portside.connect(url(server)) as ws:
        with pytest.raises(portside.ConnectionClosedError) as info:
            async for _ in ws:
                pass
        assert (info.value.code, info.value.reason) == (1011, "broken")


async def test_concurrent_recv_is_an_error() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        first = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(portside.ConcurrencyError):
            await ws.recv()
        await ws.send("x")
        assert await first == "x"


async def test_cancelled_recv_loses_no_message() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        waiting = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await ws.send("kept")
        assert await ws.recv() == "kept"


# Flow control.


async def test_max_size_fails_with_1009() -> None:
    async with running(max_size=1000) as server, portside.connect(url(server)) as ws:
        await ws.send(bytes(1000))
        assert await ws.recv() == bytes(1000)
        await ws.send(bytes(1001))
        with pytest.raises(portside.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1009


async def test_max_queue_pauses_reading_until_drained() -> None:
    received = asyncio.Event()
    go = asyncio.Event()
    results: list[portside.Data] = []

    async def lazy(ws: portside.ServerConnection) -> None:
        await ws.recv()
        received.set()
        await go.wait()
        paused = ws._reading_paused
        async for message in ws:
            results.append(message)
            if message == "last":
                break
        await ws.send(f"paused={paused}")

    async with running(lazy, max_queue=4) as server, portside.connect(url(server)) as ws:
        await ws.send("first")
        await received.wait()
        for i in range(100):
            await ws.send(str(i))
        await ws.send("last")
        # Wait until the server stopped reading: the queue is full.
        (connection,) = server.connections
        while not connection._reading_paused:
            await asyncio.sleep(0.01)
        assert connection._messages is not None
        assert len(connection._messages) <= 4 + 100
        go.set()
        assert await ws.recv() == "paused=True"
    assert results == [*map(str, range(100)), "last"]


async def test_read_limit_bounds_each_read() -> None:
    async with running(read_limit=1024, max_size=None) as server:
        async with portside.connect(url(server)) as ws:
            (connection,) = server.connections
            assert memoryview(connection.get_buffer(-1)).nbytes <= 1024 + READ_ROOM
            await ws.send(bytes(100_000))
            assert await ws.recv() == bytes(100_000)


def watch_pause_writing(ws: Any) -> asyncio.Event:
    """An event set when the transport calls ws.pause_writing()."""
    paused = asyncio.Event()
    pause_writing = ws.pause_writing

    def pause() -> None:
        pause_writing()
        paused.set()

    ws.pause_writing = pause
    return paused


async def first_of(*events: asyncio.Event) -> None:
    """Wait until one of the events is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def let_ready_tasks_run() -> None:
    """Give a task that is ready (a send() that does not wait) its turns."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_write_limit_makes_send_wait() -> None:
    # A slow reader: it reads nothing until the server's send() waits, then all.
    started = asyncio.Event()
    done = asyncio.Event()
    paused: list[asyncio.Event] = []

    async def flood(ws: portside.ServerConnection) -> None:
        paused.append(watch_pause_writing(ws))
        await ws.recv()
        started.set()
        for _ in range(100):
            await ws.send(bytes(65536))
        done.set()
        await ws.recv()

    async with running(flood, write_limit=65536) as server:
        raw = await RawClient.connect(server)
        try:
            raw.transport.pause_reading()
            raw.send(client_frame(TEXT, b"go"))
            await started.wait()
            await first_of(paused[0], done)
            (connection,) = server.connections
            buffered = connection.transport.get_write_buffer_size()
            assert not done.is_set(), f"100 sends, no wait, {buffered} bytes buffered"
            await let_ready_tasks_run()
            # send() waits: the bytes buffered stay near write_limit, not 6.5 MB.
            assert not done.is_set()
            assert connection._write_paused
            assert buffered <= 65536 + 65536 + 14
            raw.transport.resume_reading()
            reading = asyncio.ensure_future(raw.read_until_closed())
            await done.wait()
            raw.send(client_frame(CLOSE, close_payload(1000)))
            frames = await reading
            assert [f[1:] for f in frames[:-1]] == [(BINARY, bytes(65536))] * 100
            assert frames[-1][1] == CLOSE
        finally:
            # Even on failure: an unclosed StreamWriter warns when collected
            # (3.12), in whichever test collects it.
            await raw.close()


def listener_with_small_buffers() -> socket.socket:
    """A listening socket whose connections have small kernel send buffers.

    What the kernel holds for a peer that does not read then stays small next
    to what a test sends, so that the transport's own buffer is what grows.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return listener


async def silent_peer(address: tuple[str, int]) -> socket.socket:
    """A client that completes the opening handshake, then never reads."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, address)
    request = (
        f"GET / HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        # Byte by byte: nothing after the response's head is taken.
        data = await loop.sock_recv(sock, 1)
        assert data, response
        response += data
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


# (message, how many, the largest write one send() makes): far more than the
# kernel holds, in every shape the server writes: a frame with its payload
# (write()), a header and a large payload (writelines()), fragments.
FLOODS = [
    pytest.param(b"x" * 1000, 2000, 1000 + 4, id="small-binary"),
    pytest.param("x" * 1000, 2000, 1000 + 4, id="small-text"),
    pytest.param(bytes(65536), 64, 65536 + 10, id="large-binary"),
    pytest.param("é" * 32768, 64, 65536 + 10, id="large-text"),
    pytest.param([bytes(16384)] * 4, 64, 16384 + 4, id="fragments"),
]


@pytest.mark.parametrize(("message", "count", "largest"), FLOODS)
async def test_write_limit_bounds_the_buffer_for_a_peer_that_never_reads(
    message: Any, count: int, largest: int
) -> None:
    await flood_a_silent_peer(message, count, largest)


@pytest.mark.parametrize("workaround", [True, False])
async def test_write_limit_holds_where_writelines_does_not_pause(
    monkeypatch: pytest.MonkeyPatch, workaround: bool
) -> None:
    # CPython gh-127655, reproduced on any version: the selector transport's
    # writelines() buffers without pausing the protocol. Where that can happen,
    # the connection checks the buffer itself; without that, the limit fails.
    if not isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop):
        pytest.skip("asyncio's selector loop only")
    transport_class: Any = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    writelines = transport_class.writelines

    def writelines_without_pause(self: Any, list_of_data: Any) -> None:
        self._maybe_pause_protocol = lambda: None
        try:
            writelines(self, list_of_data)
        finally:
            del self._maybe_pause_protocol

    monkeypatch.setattr(transport_class, "writelines", writelines_without_pause)
    monkeypatch.setattr(
        connection_module, "_WRITELINES_DOES_NOT_PAUSE", transport_class if workaround else None
    )
    if workaround:
        await flood_a_silent_peer(bytes(65536), 64, 65536 + 10)
    else:
        with pytest.raises(AssertionError, match="64 sends, no wait"):
            await flood_a_silent_peer(bytes(65536), 64, 65536 + 10)


def test_every_writelines_goes_through_one_method() -> None:
    # Connection._writelines(), the one place that checks what writelines()
    # may not tell (CPython gh-127655): the Python layer, broadcast() and the C
    # accelerator (through _write_all()) all go through it.
    package = pathlib.Path(connection_module.__file__).parent
    callers = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Attribute) and node.attr == "writelines":
                        callers.append((path.name, function.name))
    assert callers == [("connection.py", "_writelines")]
    for path in sorted(package.glob("_speedups_*.c")):
        text = path.read_text()
        # C reads the name to look the method up (writelines_joins()), never calls it.
        assert "call_method_void(st->str_writelines" not in text, path.name
        assert "call_method(st->str_writelines" not in text, path.name


async def flood_a_silent_peer(message: Any, count: int, largest: int) -> None:
    """Send to a peer that never reads: send() waits, the buffer stays bounded."""
    limit = 65536
    watching: asyncio.Future[asyncio.Event] = asyncio.get_running_loop().create_future()
    finished = asyncio.Event()

    async def flood(ws: portside.ServerConnection) -> None:
        watching.set_result(watch_pause_writing(ws))
        try:
            for _ in range(count):
                await ws.send(message)
        except portside.ConnectionClosed:
            pass  # the peer went away, at the end of the test
        finally:
            finished.set()

    listener = listener_with_small_buffers()
    options: dict[str, Any] = {"ping_interval": None, "write_limit": limit, "max_size": None}
    async with portside.serve(flood, sock=listener, **options) as server:
        peer = await silent_peer(listener.getsockname())
        try:
            await first_of(await watching, finished)
            (connection,) = server.connections
            buffered = connection.transport.get_write_buffer_size()
            assert not finished.is_set(), f"{count} sends, no wait, {buffered} bytes buffered"
            await let_ready_tasks_run()
            assert not finished.is_set()
            # Under the limit before the last write, which may take it over by
            # one message (or fragment), frame header included.
            assert buffered <= limit + largest
            assert connection.transport.get_write_buffer_size() == buffered
        finally:
            peer.close()
        await finished.wait()


# Control frames.


async def test_ping_returns_latency() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        latency = await (await ws.ping())
        assert 0 < latency < 5
        latency = await (await ws.ping("text"))
        assert latency > 0
        await ws.pong(b"unsolicited")
        await ws.send("still fine")
        assert await ws.recv() == "still fine"


async def test_ping_with_same_data_is_refused() -> None:
    async def silent(ws: portside.ServerConnection) -> None:
        await ws.wait_closed()

    async with running(silent) as server:
        raw_ws = await portside.connect(url(server))
        # Stop the server side from answering by pausing its reading.
        (connection,) = server.connections
        connection.transport.pause_reading()
        await raw_ws.ping(b"same")
        with pytest.raises(portside.ConcurrencyError):
            await raw_ws.ping(b"same")
        connection.transport.resume_reading()
        await raw_ws.close()


async def test_pending_pings_fail_when_the_connection_closes() -> None:
    async with running(close_timeout=0.1) as server:
        ws = await portside.connect(url(server))
        (connection,) = server.connections
        connection.transport.pause_reading()
        waiter = await ws.ping()
        ws.transport.abort()
        with pytest.raises(portside.ConnectionClosedError):
            await waiter


async def test_keepalive_measures_latency() -> None:
    async with running() as server:
        ws = await portside.connect(url(server), ping_interval=0.01, ping_timeout=5)
        while ws.latency == 0:
            await asyncio.sleep(0.01)
        assert ws.latency > 0
        await ws.close()


async def test_keepalive_timeout_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    async with running(ping_interval=0.01, ping_timeout=0.05) as server:
        raw = await RawClient.connect(server)
        # Never answers pings.
        frames = await raw.read_until_closed()
        opcodes = [opcode for _, opcode, _ in frames]
        assert opcodes[0] == PING
        assert frames[-1][1:] == (CLOSE, close_payload(1011, "keepalive ping timeout"))
        await raw.close()
    assert "no pong to keepalive ping" in caplog.text


# Closing.


async def test_close_codes_and_attributes() -> None:
    async with running() as server:
        ws = await portside.connect(url(server))
        assert ws.open and not ws.closed
        assert ws.close_code is None and ws.close_reason is None
        assert ws.state is State.OPEN
        await ws.close(4000, "custom")
        assert ws.closed and not ws.open
        assert ws.state is State.CLOSED
        # The server echoes the code without the reason.
        assert (ws.close_code, ws.close_reason) == (4000, "")
        await ws.close()  # closing twice does nothing
        with pytest.raises(portside.ConnectionClosedOK if False else portside.ConnectionClosed):
            await ws.send("too late")


async def test_close_rejects_invalid_code() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        with pytest.raises(ValueError, match="invalid close code"):
            await ws.close(1006)


async def test_close_timeout_when_the_peer_does_not_answer() -> None:
    async with running(close_timeout=0.1) as server:
        ws = await portside.connect(url(server), close_timeout=0.1)
        (connection,) = server.connections
        connection.transport.pause_reading()
        await ws.close()
        assert ws.closed
        assert ws.close_code == 1006


async def test_client_waits_for_the_server_to_close_tcp() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        (connection,) = server.connections
        await ws.close()
        assert connection.closed


async def test_wait_closed_after_peer_closes() -> None:
    async with running() as server:
        ws = await portside.connect(url(server))
        (connection,) = server.connections
        await connection.close(1001)
        await ws.wait_closed()
        assert ws.close_code == 1001


async def test_cancelling_one_wait_closed_leaves_the_others_waiting() -> None:
    async with running() as server:
        ws = await portside.connect(url(server))
        first = asyncio.ensure_future(ws.wait_closed())
        second = asyncio.ensure_future(ws.wait_closed())
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert not second.done()
        await ws.close()
        await second
        await ws.wait_closed()  # returns at once once closed


async def test_properties() -> None:
    async with running(subprotocols=["chat"]) as server:
        async with portside.connect(url(server, "/p?q=1"), subprotocols=["chat"]) as ws:
            (connection,) = server.connections
            assert connection.path == "/p?q=1"
            assert connection.request_headers["Host"].startswith("127.0.0.1:")
            assert connection.response_headers["Upgrade"] == "websocket"
            assert ws.subprotocol == connection.subprotocol == "chat"
            assert ws.remote_address == connection.local_address
            assert ws.local_address == connection.remote_address
            assert ws.id != connection.id
            assert ws.id == ws.id
            assert ws.request is not None and ws.response is not None
            assert ws.request_headers["Upgrade"] == "websocket"


# Protocol errors from the peer.


async def test_protocol_error_fails_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    async with running() as server:
        raw = await RawClient.connect(server)
        raw.send(client_frame(TEXT, b"x", rsv=2))
        frames = await raw.read_until_closed()
        assert frames == [(0x88, CLOSE, close_payload(1002, "reserved bits must be 0"))]
        await raw.close()
    records = [r for r in caplog.records if "broke the protocol" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert "close code 1002" in records[0].getMessage()
    assert "Traceback" not in caplog.text


async def test_messages_before_the_error_are_answered_first() -> None:
    # Autobahn 3.2, strict: echo of the valid message, then Close 1002, no Pong.
    async with running() as server:
        raw = await RawClient.connect(server)
        raw.send(
            client_frame(TEXT, b"Hello")
            + client_frame(TEXT, b"Hello", rsv=2)
            + client_frame(PING, b"")
        )
        frames = await raw.read_until_closed()
        assert [f[1:] for f in frames] == [
            (TEXT, b"Hello"),
            (CLOSE, close_payload(1002, "reserved bits must be 0")),
        ]
        await raw.close()


async def test_error_after_messages_the_handler_does_not_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def never_reads(ws: portside.ServerConnection) -> None:
        await ws.wait_closed()

    async with running(never_reads, close_timeout=0.1) as server:
        raw = await RawClient.connect(server)
        raw.send(client_frame(TEXT, b"unread") + client_frame(7))
        frames = await raw.read_until_closed()
        assert frames[-1][1] == CLOSE
        assert frames[-1][2][:2] == close_payload(1002)
        await raw.close()


async def test_invalid_utf8_fails_with_1007() -> None:
    async with running() as server, portside.connect(url(server)) as ws:
        ws.transport.write(b"".join(ws.protocol._frame(TEXT, b"\xff")))
        with pytest.raises(portside.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1007


async def test_eof_without_close_frame() -> None:
    async with running() as server:
        raw = await RawClient.connect(server)
        (connection,) = server.connections
        await raw.close()
        await connection.wait_closed()
        assert connection.close_code == 1006
        with pytest.raises(portside.ConnectionClosedError, match="no close frame"):
            await connection.recv()


async def test_subclasses_of_str_and_bytes_are_sent() -> None:
    class Text(str):
        pass

    class Blob(bytes):
        pass

    async with running() as server, portside.connect(url(server)) as ws:
        await ws.send(Text("text subclass"))
        assert await ws.recv() == "text subclass"
        await ws.send(Blob(b"bytes subclass"))
        assert await ws.recv() == b"bytes subclass"


async def test_client_closes_tcp_when_the_server_does_not() -> None:
    # A server that answers the Close frame but keeps the TCP connection open.
    async def lingering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(upgrade_response(await reader.readuntil(b"\r\n\r\n")))
        await reader.readexactly(2 + 4 + 2)  # the client's masked Close frame, code only
        writer.write(b"\x88\x02\x03\xe8")
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(lingering, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = await portside.connect(f"ws://127.0.0.1:{port}/", close_timeout=0.05)
        await ws.close()
        assert ws.closed
        assert ws.close_code == 1000
    finally:
        server.close()
        await server.wait_closed()


async def test_long_failure_reasons_are_cut_to_fit_a_close_frame() -> None:
    async with running() as server:
        ws = await portside.connect(url(server))
        ws._fail(1011, "é" * 100)
        await ws.wait_closed()
        assert ws.protocol.close_sent is not None
        reason = ws.protocol.close_sent.reason
        assert reason.endswith("...")
        assert len(reason.encode()) <= 123


async def test_fragments_wait_for_the_peer_to_read() -> None:
    done = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield bytes(65536)
        done.set()

    # Small kernel buffers, set before the handshake of TCP so that they hold:
    # 4 MiB cannot hide in the kernel.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    client_sock = socket.socket()
    client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    client_sock.connect(listener.getsockname())
    client_sock.setblocking(False)
    options: dict[str, Any] = {"compression": None, "max_size": None}  # zeros compress
    async with portside.serve(echo, sock=listener, ping_interval=None, **options) as server:
        ws = await portside.connect(
            "ws://localhost/", sock=client_sock, write_limit=65536, **options
        )
        try:
            (connection,) = server.connections
            connection.transport.pause_reading()
            paused = watch_pause_writing(ws)
            sending = asyncio.ensure_future(ws.send(chunks()))
            await first_of(paused, done)
            assert not done.is_set()
            await let_ready_tasks_run()
            assert not done.is_set()
            assert ws.transport.get_write_buffer_size() <= 65536 + 65536 + 14
            connection.transport.resume_reading()
            await sending
            assert await ws.recv() == bytes(64 * 65536)
            await ws.close()
        finally:
            ws.transport.abort()  # after a failure: nothing left for a later test's gc


# Traffic counters, for access logs and metrics.


async def test_counters_of_messages_and_bytes_both_ways() -> None:
    served: list[portside.ServerConnection] = []

    async def echo_and_keep(ws: portside.ServerConnection) -> None:
        served.append(ws)
        async for message in ws:
            await ws.send(message)

    async with running(echo_and_keep, compression=None) as server:
        async with portside.connect(url(server), compression=None, ping_interval=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"x" * 200)
            await ws.recv()
            await ws.send(b"y" * 70000)
            await ws.recv()
            await ws.send(["ab", "cd"])
            assert await ws.recv() == "abcd"
            await ws.ping(b"p")
        (connection,) = served
        await connection.wait_closed()
    # A client's frames: header + 4-byte mask + payload; "ab", "cd" and the
    # closing empty frame for the fragmented message; then Ping and Close.
    client_sent = 11 + 208 + 70014 + (8 + 8 + 6) + 7 + 8
    # The server's: header + payload; "abcd" in one frame; Pong and Close.
    server_sent = 7 + 204 + 70010 + 6 + 3 + 4
    assert (ws.messages_sent, ws.bytes_sent) == (4, client_sent)
    assert (connection.messages_received, connection.bytes_received) == (4, client_sent)
    assert (connection.messages_sent, connection.bytes_sent) == (4, server_sent)
    assert (ws.messages_received, ws.bytes_received) == (4, server_sent)


# The write barrier: every write calls it first (portside.hub writes the frames
# it deferred for the connection then, so that they keep their order).


@asynccontextmanager
async def raw_pair(**kwargs: Any) -> AsyncIterator[tuple[portside.ServerConnection, RawClient]]:
    """A server connection whose handler waits, and a raw client connected to it."""
    opened: asyncio.Future[portside.ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        opened.set_result(ws)
        await done.wait()

    async with running(handler, **kwargs) as server:
        raw = await RawClient.connect(server)
        try:
            yield await opened, raw
        finally:
            done.set()
            await raw.close()


def write_first(ws: Any, frame: bytes = server_frame(TEXT, b"first")) -> list[str]:
    """Arm a barrier that writes ``frame``; return the log of its calls."""
    calls: list[str] = []

    def barrier() -> None:
        calls.append("barrier")
        ws._write_barrier = None  # what it writes itself goes through no barrier
        ws._write_frame(frame)

    ws._write_barrier = barrier
    return calls


LARGE = bytes(range(256)) * 300  # above the size written without a copy

WRITES: dict[str, tuple[Callable[[Any], Any], list[tuple[int, bytes | None]]]] = {
    "send ASCII": (lambda ws: ws.send("x"), [(0x81, b"x")]),
    "send non-ASCII": (lambda ws: ws.send("é"), [(0x81, "é".encode())]),
    "send bytes": (lambda ws: ws.send(b"x"), [(0x82, b"x")]),
    "send large bytes": (lambda ws: ws.send(LARGE), [(0x82, LARGE)]),
    "send large str": (lambda ws: ws.send("y" * 70000), [(0x81, b"y" * 70000)]),
    "send bytearray": (lambda ws: ws.send(bytearray(b"x")), [(0x82, b"x")]),
    "send text=True": (lambda ws: ws.send(b"x", text=True), [(0x81, b"x")]),
    "send fragments": (
        lambda ws: ws.send(["a", "b"]),
        [(0x01, b"a"), (0x00, b"b"), (0x80, b"")],
    ),
    "ping": (lambda ws: ws.ping(b"p"), [(0x89, b"p")]),
    "pong": (lambda ws: ws.pong(b"p"), [(0x8A, b"p")]),
    "keepalive ping": (lambda ws: ws._send_keepalive(), [(0x89, None)]),
    "broadcast": (lambda ws: portside.broadcast([ws], "x"), [(0x81, b"x")]),
    "_write_frame": (lambda ws: ws._write_frame(server_frame(TEXT, b"x")), [(0x81, b"x")]),
    "_write_all": (lambda ws: ws._write_all([server_frame(TEXT, b"x")]), [(0x81, b"x")]),
    "close": (lambda ws: ws.close(1000, "bye"), [(0x88, close_payload(1000, "bye"))]),
    "fail": (lambda ws: ws._fail(1011, "bad"), [(0x88, close_payload(1011, "bad"))]),
}


@pytest.mark.parametrize("write", WRITES)
async def test_every_write_calls_the_barrier_first(write: str) -> None:
    operation, expected = WRITES[write]
    async with raw_pair(ping_timeout=None) as (ws, raw):
        calls = write_first(ws)
        result = operation(ws)
        if inspect.isawaitable(result):
            # close() waits for the peer's Close frame: answered below.
            pending = asyncio.ensure_future(result)
        assert await raw.read_frame() == (0x81, b"first")
        for first, payload in expected:
            got = await raw.read_frame()
            assert got[0] == first
            if payload is not None:
                assert got[1] == payload
        if first == 0x88:
            raw.send(client_frame(CLOSE, close_payload(1000)))
        if inspect.isawaitable(result):
            await pending
        # The C fast path and the Python path it falls back on may both call it.
        assert calls == ["barrier"]


async def test_without_a_barrier_nothing_is_called() -> None:
    async with raw_pair() as (ws, raw):
        assert ws._write_barrier is None
        await ws.send("x")
        assert await raw.read_frame() == (0x81, b"x")


async def test_a_client_calls_its_barrier_first() -> None:
    async with running() as server, portside.connect(url(server)) as client:
        # A client's frames are masked (RFC 6455 5.3).
        write_first(client, client_frame(TEXT, b"first"))
        await client.send("x")  # the C fast path's masked frame
        assert [await client.recv(), await client.recv()] == ["first", "x"]
        write_first(client, client_frame(TEXT, b"first"))
        await client.send("é")
        assert [await client.recv(), await client.recv()] == ["first", "é"]


async def test_the_barrier_writes_before_compressing() -> None:
    # With context takeover each compressed message depends on the ones before:
    # what the barrier writes must be compressed first.
    opened: asyncio.Future[portside.ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        opened.set_result(ws)
        await done.wait()

    def broadcast_first(ws: Any) -> None:
        def barrier() -> None:
            ws._write_barrier = None
            portside.broadcast([ws], "first " * 10)

        ws._write_barrier = barrier

    async with running(handler, compression="deflate") as server:
        async with portside.connect(url(server), compression="deflate") as client:
            ws = await opened
            assert ws.protocol.deflate is not None
            for message, received in (
                ("second " * 10, "second " * 10),
                (["second ", "fragments"], "second fragments"),
            ):
                broadcast_first(ws)
                await ws.send(message)
                assert [await client.recv(), await client.recv()] == ["first " * 10, received]
            broadcast_first(ws)
            await ws.send(b"second", text=True)
            assert [await client.recv(), await client.recv()] == ["first " * 10, "second"]
            broadcast_first(ws)
            portside.broadcast([ws], "second " * 10)
            assert [await client.recv(), await client.recv()] == ["first " * 10, "second " * 10]
            done.set()


async def test_a_barrier_that_raises_fails_the_write_and_writes_nothing() -> None:
    def barrier() -> None:
        raise RuntimeError("barrier")

    async with raw_pair() as (ws, raw):
        ws._write_barrier = barrier
        for write in (
            lambda: ws.send("x"),
            lambda: ws.send(LARGE),
            lambda: ws.send("é"),
            lambda: ws.send(b"x", text=True),
            lambda: ws.send(["a", "b"]),
            lambda: ws.ping(),
            lambda: ws.pong(),
        ):
            with pytest.raises(RuntimeError, match="barrier"):
                await write()
        with pytest.raises(RuntimeError, match="barrier"):
            ws._write_frame(server_frame(TEXT, b"x"))
        assert ws.state is State.OPEN
        ws._write_barrier = None
        await ws.send("after")
        assert await raw.read_frame() == (0x81, b"after")
