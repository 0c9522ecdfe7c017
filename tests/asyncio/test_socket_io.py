"""Reads and writes on the socket itself, under asyncio's and uvloop's transports.

On asyncio's own loop, the C ``ConnectionBase`` replaces the Python steps of
``_SelectorSocketTransport``'s reads (get_buffer, recv_into, buffer_updated) and
of its ``write()`` when nothing is buffered, with the same outcome in every case
(portside/asyncio/_speedups_selector.c and _speedups_direct_io.c);
on uvloop it writes on the socket itself when the transport is not closing and
holds nothing. These tests hold for every implementation and loop; the ones
about the hook itself need the C accelerator on the loop they are about.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pathlib
import socket
import ssl
import struct
from collections.abc import Iterator
from typing import Any

import pytest

import portside
from portside.asyncio import speedups
from portside.asyncio.speedups import IMPLEMENTATION
from tests.asyncio.helpers import RawClient, pair, running, url
from tests.needs import needs_speedups

needs_c = needs_speedups(IMPLEMENTATION == "c")


def hooked(ws: Any) -> bool:
    """Whether the connection reads from its socket itself."""
    callback = getattr(ws.transport, "_read_ready_cb", None)
    return getattr(callback, "__self__", None) is ws


def on_selector_loop() -> bool:
    return isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)


def expected_direct_io() -> int:
    """What ``_direct_io`` is on a plain TCP connection of the running loop."""
    if IMPLEMENTATION != "c":
        return 0
    if on_selector_loop():
        return 1
    return 2 if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else 0


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """The contexts the running loop's exception handler gets meanwhile."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(None)


async def test_server_and_client_are_hooked_on_the_selector_loop() -> None:
    async with pair() as (server_ws, client):
        expected = IMPLEMENTATION == "c" and on_selector_loop()
        assert hooked(server_ws) is expected
        assert hooked(client) is expected
        assert server_ws._direct_io == client._direct_io == expected_direct_io()
        await client.send("ping")
        assert await server_ws.recv() == "ping"
        await server_ws.send("pong")
        assert await client.recv() == "pong"


async def test_unhooked_when_the_connection_is_lost() -> None:
    # The transport must not keep the connection: only the garbage collector
    # would free them then.
    async with pair() as (server_ws, client):
        await client.close()
        await server_ws.wait_closed()
        assert not hooked(server_ws)
        assert not hooked(client)
        assert server_ws._direct_io == client._direct_io == 0
        if IMPLEMENTATION == "c" and on_selector_loop():
            transport: Any = server_ws.transport
            assert transport._read_ready_cb == transport._read_ready__get_buffer


async def test_connections_are_freed_without_the_garbage_collector() -> None:
    async with running() as server:
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(3):
                async with portside.connect(url(server)) as client:
                    await client.send("x")
                    assert await client.recv() == "x"
            await asyncio.sleep(0)
            gc.collect()
            left = [
                o
                for o in gc.garbage
                if isinstance(o, (portside.ServerConnection, portside.ClientConnection))
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert left == []


async def test_tls_connections_are_left_to_their_transport() -> None:
    cert = pathlib.Path(__file__).with_name("localhost.pem")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(cert)
    opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(ws: portside.ServerConnection) -> None:
        opened.set_result(ws)
        async for message in ws:
            await ws.send(message)

    async with running(handler, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        async with portside.connect(f"wss://localhost:{port}/", ssl=client_context) as client:
            await client.send("secure")
            assert await client.recv() == "secure"
            assert (await opened)._direct_io == client._direct_io == 0


async def test_sending_after_a_reset_from_the_peer_ends_in_connection_closed() -> None:
    # The server does not read, so only writing meets the reset: the socket
    # refuses the frame (EPIPE or ECONNRESET), which goes to the transport's
    # write(), which meets the error and closes the connection.
    ready = asyncio.Event()
    reset = asyncio.Event()
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: portside.ServerConnection) -> None:
        ws.transport.pause_reading()
        ready.set()
        await reset.wait()
        try:
            for _ in range(1000):
                await ws.send(b"x" * 1024)
                await asyncio.sleep(0)
        except portside.ConnectionClosed as exc:
            outcome.set_result(exc)

    with loop_errors() as errors:
        async with running(handler, compression=None) as server:
            raw = await RawClient.connect(server)
            await ready.wait()
            sock = raw.transport.get_extra_info("socket")
            # SO_LINGER 0: close() sends RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.writer.close()
            await raw.writer.wait_closed()
            reset.set()
            exc = await outcome
    assert isinstance(exc, portside.ConnectionClosedError)
    assert errors == []


@pytest.mark.parametrize(
    "big",
    [bytes(range(256)) * 16384, "abcdefgh" * 524288],  # 4 MiB
    ids=["bytes", "text"],
)
async def test_frames_after_a_partial_write_arrive_in_order(big: bytes | str) -> None:
    # The socket takes part of the frame: the rest of a bytes payload is a
    # view of it, that of a text's a copy, and either goes to write().
    payload = big.encode() if isinstance(big, str) else big
    buffered: list[int] = []

    async def handler(ws: portside.ServerConnection) -> None:
        await ws.send(big)
        buffered.append(ws.transport.get_write_buffer_size())
        await ws.send(b"after")
        await ws.send("text after")
        await ws.wait_closed()

    async with running(handler, compression=None, write_limit=2**26) as server:
        raw = await RawClient.connect(server)
        header = await raw.reader.readexactly(10)
        assert header[:2] == (b"\x81\x7f" if isinstance(big, str) else b"\x82\x7f")
        assert struct.unpack("!Q", header[2:])[0] == len(payload)
        assert await raw.reader.readexactly(len(payload)) == payload
        assert await raw.reader.readexactly(7) == b"\x82\x05after"
        assert await raw.reader.readexactly(12) == b"\x81\x0atext after"
        await raw.close()
    assert buffered[0] > 0  # the socket took part of the frame only


async def test_a_reset_from_the_peer_closes_the_connection() -> None:
    closed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: portside.ServerConnection) -> None:
        try:
            await ws.recv()
        except portside.ConnectionClosed as exc:
            closed.set_result(exc)

    async with running(handler) as server:
        raw = await RawClient.connect(server)
        sock = raw.transport.get_extra_info("socket")
        # SO_LINGER 0: close() sends RST; the server's read fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.transport.abort()
        exc = await closed
        assert isinstance(exc, portside.ConnectionClosedError)
        assert exc.rcvd is None


async def test_a_failing_buffer_updated_is_a_fatal_error() -> None:
    if not on_selector_loop():
        pytest.skip("the selector transport's error handling")
    with loop_errors() as errors:
        async with pair() as (server_ws, client):

            class Failing(type(server_ws.protocol)):  # type: ignore[misc]
                __slots__ = ()

                def buffer_updated(self, nbytes: int) -> Any:
                    raise ValueError("broken")

            server_ws.protocol.__class__ = Failing
            await client.send("x")
            await server_ws.wait_closed()
    assert [context["message"] for context in errors] == [
        "Fatal error: protocol.buffer_updated() call failed."
    ]
    assert isinstance(errors[0]["exception"], ValueError)


class Unsized:
    """Not a buffer, and without a length."""


GET_BUFFER_FAILED = "Fatal error: protocol.get_buffer() call failed."
READ_FAILED = "Fatal read error on socket transport"


@pytest.mark.parametrize(
    ("buffer", "message", "error"),
    [
        (bytearray(), GET_BUFFER_FAILED, RuntimeError),
        (b"", GET_BUFFER_FAILED, RuntimeError),
        (Unsized(), GET_BUFFER_FAILED, TypeError),
        (b"read-only", READ_FAILED, TypeError),
        ("not a buffer", READ_FAILED, TypeError),
    ],
    ids=["empty", "empty-read-only", "unsized", "read-only", "str"],
)
async def test_an_unusable_buffer_is_a_fatal_error(buffer: Any, message: str, error: Any) -> None:
    # As the selector transport reads: len(buffer) first, which must be more
    # than 0, then socket.recv_into(buffer), which takes a writable buffer.
    if not on_selector_loop():
        pytest.skip("the selector transport's error handling")
    with loop_errors() as errors:
        async with pair() as (server_ws, client):
            server_ws.get_buffer = lambda sizehint: buffer  # type: ignore[method-assign]
            await client.send("x")
            await server_ws.wait_closed()
    assert [context["message"] for context in errors] == [message]
    assert type(errors[0]["exception"]) is error


async def test_an_overridden_buffer_updated_is_called_on_each_read() -> None:
    # The connection reading its socket itself calls buffer_updated() in C
    # directly unless a subclass overrides it.
    if not on_selector_loop():
        pytest.skip("uvloop's transport binds buffer_updated() when the connection starts")
    reads: list[int] = []
    async with pair(compression=None) as (server_ws, client):

        class Counting(type(server_ws)):  # type: ignore[misc]
            def buffer_updated(self, nbytes: int) -> None:
                reads.append(nbytes)
                super().buffer_updated(nbytes)

        server_ws.__class__ = Counting
        await client.send("counted")
        assert await server_ws.recv() == "counted"
        assert reads == [2 + 4 + 7]  # header, mask, payload


@needs_c
async def test_read_ready_by_hand() -> None:
    if not on_selector_loop():
        pytest.skip("asyncio's selector loop only")
    async with pair() as (server_ws, client):
        read_ready = getattr(server_ws, "_read_ready")  # noqa: B009 - C only
        with pytest.raises(TypeError):
            read_ready(1)
        # Nothing to read: EAGAIN, nothing happens.
        assert read_ready() is None
        # KeyboardInterrupt goes on up, as from the transport's own method.

        def interrupted(sizehint: int) -> bytearray:
            raise KeyboardInterrupt

        own = server_ws.get_buffer
        server_ws.get_buffer = interrupted  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            read_ready()
        server_ws.get_buffer = own  # type: ignore[method-assign]
        # A lost connection reads nothing.
        transport: Any = server_ws.transport
        transport._conn_lost += 1
        try:
            await client.send("waits")
            await asyncio.sleep(0.01)
            assert read_ready() is None
        finally:
            transport._conn_lost -= 1
        assert await server_ws.recv() == "waits"
        # Unhooked, it is the transport's own read.
        server_ws._unhook_transport()
        assert not hooked(server_ws)
        assert read_ready() is None
        assert server_ws._hook_transport() is True
        assert server_ws._hook_transport() is False  # already
        await client.send("again")
        assert await server_ws.recv() == "again"


async def test_hook_declines_other_transports() -> None:
    async with pair() as (server_ws, client):
        transport = server_ws.transport
        server_ws._unhook_transport()
        try:
            server_ws.transport = asyncio.Transport()
            assert server_ws._hook_transport() is False
        finally:
            server_ws.transport = transport
        assert not hooked(server_ws)
        await client.send("unhooked")
        assert await server_ws.recv() == "unhooked"


@needs_c
@pytest.mark.parametrize("name", ["_conn_lost", "_eof", "_empty_waiter", "_buffer"])
async def test_hook_declines_a_transport_class_that_defines_its_state(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook reads these from the transport's instance dict, which is right
    # only while the class does not define them.
    if not on_selector_loop():
        pytest.skip("asyncio's selector loop only")
    async with pair() as (server_ws, client):
        transport: Any = server_ws.transport
        server_ws._unhook_transport()
        monkeypatch.setattr(type(transport), name, getattr(transport, name), raising=False)
        assert server_ws._hook_transport() is False
        monkeypatch.undo()
        assert server_ws._hook_transport() is True
        await client.send("hooked again")
        assert await server_ws.recv() == "hooked again"


@needs_c
async def test_state_missing_from_the_instance_dict_is_looked_up() -> None:
    # Deleted from the instance after the hook, found on the class: what
    # getattr finds is what counts.
    if not on_selector_loop():
        pytest.skip("asyncio's selector loop only")
    # Without compression, so that send() takes the C path.
    async with pair(compression=None) as (server_ws, client):
        transport: Any = server_ws.transport
        transport_class = type(transport)
        for name in ("_conn_lost", "_eof", "_empty_waiter", "_buffer"):
            value = transport.__dict__.pop(name)
            setattr(transport_class, name, value)
            try:
                await server_ws.send(name)
                assert await client.recv() == name
                await client.send(name)
                assert await server_ws.recv() == name
            finally:
                delattr(transport_class, name)
                setattr(transport, name, value)
        # The class's value says a sendfile() is running: the frame goes to
        # write(), which refuses it, as it would without the hook.
        del transport._empty_waiter
        transport_class._empty_waiter = asyncio.get_running_loop().create_future()
        try:
            with pytest.raises(RuntimeError, match="sendfile is in progress"):
                await server_ws.send("refused")
        finally:
            del transport_class._empty_waiter
            transport._empty_waiter = None


async def test_a_frame_to_a_full_socket_is_buffered_whole() -> None:
    # The socket takes nothing (EAGAIN) while the transport's buffer is empty:
    # the whole frame, header included, goes to the transport's buffer.
    text = "abcdefgh" * 8192  # 64 KiB of ASCII
    filled: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler(ws: portside.ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        fd = sock.fileno()
        total = 0
        try:
            while True:
                total += os.write(fd, b"\x00" * 65536)
        except BlockingIOError:
            filled.set_result(total)
        await ws.send(text)
        await ws.wait_closed()

    async with running(handler, compression=None) as server:
        raw = await RawClient.connect(server)
        size = await filled
        assert await raw.reader.readexactly(size) == b"\x00" * size
        assert await raw.reader.readexactly(10) == b"\x81\x7f" + (65536).to_bytes(8, "big")
        assert await raw.reader.readexactly(65536) == text.encode()
        await raw.close()


@needs_c
async def test_hook_declines_a_transport_without_its_private_state() -> None:
    # A selector transport of another Python, without the attributes the hook
    # reads, or with a descriptor it cannot use: left to its own methods.
    if not on_selector_loop():
        pytest.skip("asyncio's selector loop only")
    async with pair(compression=None) as (server_ws, client):
        transport: Any = server_ws.transport
        server_ws._unhook_transport()
        for name, value in [
            ("_read_ready_cb", None),
            ("_sock_fd", None),
            ("_sock_fd", -1),
            ("_sock_fd", 2**100),
            ("_sock_fd", "3"),
        ]:
            original = transport.__dict__.pop(name)
            if value is not None:
                setattr(transport, name, value)
            try:
                assert server_ws._hook_transport() is False, (name, value)
            finally:
                setattr(transport, name, original)
        assert server_ws._hook_transport() is True
        await client.send("hooked again")
        assert await server_ws.recv() == "hooked again"


class StandIn:
    """What the hook reads of uvloop's socket transports, failing where told.

    uvloop's own transports answer these calls without fail; this stand-in,
    named as uvloop names its TCP transport, takes the paths where they would
    not, on a real socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock: Any = sock
        self.closing: Any = False
        self.buffered: Any = 0
        self.written: list[bytes] = []

    def get_extra_info(self, name: str) -> Any:
        assert name == "socket"
        if isinstance(self.sock, BaseException):
            raise self.sock
        return self.sock

    def is_closing(self) -> Any:
        if isinstance(self.closing, BaseException):
            raise self.closing
        return self.closing

    def get_write_buffer_size(self) -> Any:
        if isinstance(self.buffered, BaseException):
            raise self.buffered
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)


UvloopStandIn: Any = type("uvloop.loop.TCPTransport", (StandIn,), {})


class Descriptor:
    def __init__(self, fileno: Any) -> None:
        self.value = fileno

    def fileno(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


@needs_c
def test_uvloop_transport_hook_and_writes() -> None:
    base: Any = speedups.ConnectionBase
    left, right = socket.socketpair()
    with left, right:
        connection = base()
        transport = UvloopStandIn(left)
        connection.transport = transport
        # No socket, or none of a usable descriptor: not hooked.
        unusable: list[Any] = [None, Descriptor(-1), Descriptor(2**40), Descriptor("3")]
        for sock in unusable:
            transport.sock = sock
            assert connection._hook_transport() is False
            assert connection._direct_io == 0
        for sock in (KeyError("get_extra_info"), Descriptor(KeyError("fileno"))):
            transport.sock = sock
            with pytest.raises(KeyError):
                connection._hook_transport()
            assert connection._direct_io == 0
        transport.sock = left
        assert connection._hook_transport() is True
        assert connection._direct_io == 2
        # Written on the socket itself while the transport would send at once;
        # else by write(); an error from the transport's answers goes on.
        connection._write_frame(b"direct")
        assert right.recv(100) == b"direct"
        transport.closing = True
        connection._write_frame(b"closing")
        transport.closing, transport.buffered = False, 10
        connection._write_frame(b"buffered")
        assert transport.written == [b"closing", b"buffered"]
        for failing in ("closing", "buffered"):
            setattr(transport, failing, KeyError(failing))
            with pytest.raises(KeyError, match=failing):
                connection._write_frame(b"lost")
            setattr(transport, failing, 0)
        assert transport.written == [b"closing", b"buffered"]
        connection._unhook_transport()
        assert connection._direct_io == 0
        connection._write_frame(b"unhooked")
        assert transport.written[-1] == b"unhooked"
