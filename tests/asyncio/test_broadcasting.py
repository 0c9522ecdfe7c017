"""broadcast() over real loopback connections."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import portside
from portside.asyncio.broadcasting import DEFAULT_POLICY, SlowConsumerPolicy, broadcast
from tests.asyncio.helpers import url


@contextlib.asynccontextmanager
async def clients(
    count: int, server_kwargs: dict[str, Any] | None = None, **client_kwargs: Any
) -> AsyncIterator[tuple[set[portside.ServerConnection], list[portside.ClientConnection]]]:
    """``count`` clients, and the set of their connections on the server."""
    connections: set[portside.ServerConnection] = set()
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        connections.add(ws)
        await done.wait()

    options = {"ping_interval": None, **(server_kwargs or {})}
    async with portside.serve(handler, "127.0.0.1", 0, **options) as server:
        opened = [await portside.connect(url(server), **client_kwargs) for _ in range(count)]
        while len(connections) < count:
            await asyncio.sleep(0)
        try:
            yield connections, opened
        finally:
            done.set()
            for client in opened:
                await client.close()


async def test_text_and_binary_reach_every_client() -> None:
    async with clients(3) as (connections, opened):
        broadcast(connections, "hello")
        broadcast(connections, b"\x00\x01")
        broadcast(connections, bytearray(b"ba"))
        broadcast(connections, memoryview(b"mv"))
        for client in opened:
            assert [await client.recv() for _ in range(4)] == ["hello", b"\x00\x01", b"ba", b"mv"]


async def test_text_argument_overrides_the_frame_type() -> None:
    async with clients(2) as (connections, opened):
        broadcast(connections, b"caf\xc3\xa9", text=True)
        broadcast(connections, "binary", text=False)
        for client in opened:
            assert await client.recv() == "café"
            assert await client.recv() == b"binary"


async def test_large_message() -> None:
    message = bytes(range(256)) * 1024
    async with clients(2, max_size=None) as (connections, opened):
        broadcast(connections, message)
        for client in opened:
            assert await client.recv() == message


async def test_unsupported_type() -> None:
    with pytest.raises(TypeError, match="must be str or bytes-like, not int"):
        broadcast([], 42)  # type: ignore[arg-type]


async def test_connections_that_are_not_open_are_skipped() -> None:
    async with clients(2) as (connections, opened):
        closing = next(iter(connections))
        await closing.close()
        broadcast(connections, "after")  # no error, nothing sent to the closed one
        others = [c for c in opened if c.open or c.state is portside.State.OPEN]
        assert len(others) == 1
        assert await others[0].recv() == "after"
        assert closing.broadcast_skips == 0


async def test_connection_sending_a_fragmented_message_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with clients(2) as (connections, opened):
        busy = next(iter(connections))
        release = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "frag"
            await release.wait()
            yield "ment"

        task = asyncio.create_task(busy.send(fragments()))
        while not busy.protocol._sending:
            await asyncio.sleep(0)
        with caplog.at_level(logging.WARNING):
            broadcast(connections, "news")
        assert "skipped broadcast: sending a fragmented message" in caplog.text
        release.set()
        await task
        received = sorted([await c.recv() for c in opened], key=str)
        assert received == ["fragment", "news"]


class FailingWrites:
    """A transport whose write() fails; the rest is the real one's."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        raise OSError("boom")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@contextlib.contextmanager
def failing_writes(ws: portside.ServerConnection) -> Iterator[None]:
    real = ws.transport
    ws.transport = FailingWrites(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        ws.transport = real


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11's")
async def test_raise_exceptions_groups_the_errors() -> None:
    async with clients(3) as (connections, opened):
        broken = sorted(connections, key=lambda c: c.id)[0]
        group: Any = vars(builtins)["ExceptionGroup"]  # Python 3.11's
        with failing_writes(broken), pytest.raises(group) as info:
            broadcast(connections, "x", raise_exceptions=True)
        (error,) = info.value.exceptions
        assert isinstance(error, RuntimeError)
        assert isinstance(error.__cause__, OSError)
        # The others got the message all the same.
        others = [c for c in opened if c.local_address != broken.remote_address]
        assert [await c.recv() for c in others] == ["x", "x"]


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.10 only")
async def test_raise_exceptions_needs_python_311() -> None:  # pragma: no cover
    with pytest.raises(ValueError, match=r"requires at least Python 3\.11"):
        broadcast([], "x", raise_exceptions=True)


async def test_write_failure_is_logged_without_raise_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with clients(1) as (connections, _):
        (ws,) = connections
        with failing_writes(ws), caplog.at_level(logging.WARNING):
            broadcast(connections, "x")
        assert "skipped broadcast: failed to write message: OSError: boom" in caplog.text


@pytest.mark.parametrize("no_context_takeover", [True, False])
async def test_compressed_connections(no_context_takeover: bool) -> None:
    deflate = portside.Deflate(server_no_context_takeover=no_context_takeover)
    message = "compressible " * 100
    async with clients(3, {"compression": deflate}) as (connections, opened):
        assert all(ws.protocol.deflate is not None for ws in connections)
        for _ in range(3):
            broadcast(connections, message)
        broadcast(connections, "tiny")  # below min_size: sent uncompressed
        for client in opened:
            assert [await client.recv() for _ in range(4)] == [message] * 3 + ["tiny"]


async def test_mixed_compression_settings_share_frames_by_setting() -> None:
    message = b"x" * 1000
    async with (
        clients(2, {"compression": portside.Deflate(server_no_context_takeover=True)}) as (a, ca),
        clients(2, {"compression": None}) as (b, cb),
    ):
        broadcast(a | b, message)
        for client in ca + cb:
            assert await client.recv() == message


async def test_client_connections_mask_each_frame() -> None:
    received: list[Any] = []
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        received.append(await ws.recv())
        if len(received) == 2:
            done.set()

    async with portside.serve(handler, "127.0.0.1", 0) as server:
        async with portside.connect(url(server)) as one, portside.connect(url(server)) as two:
            broadcast([one, two], "from clients")
            await done.wait()
    assert received == ["from clients", "from clients"]


@contextlib.asynccontextmanager
async def slow_client(
    write_limit: int = 1024,
) -> AsyncIterator[tuple[portside.ServerConnection, socket.socket]]:
    """A server connection whose client never reads, with small kernel buffers."""
    opened: asyncio.Future[portside.ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        opened.set_result(ws)
        await done.wait()

    async with portside.serve(
        handler, "127.0.0.1", 0, write_limit=write_limit, ping_interval=None, compression=None
    ) as server:
        host, port = server.sockets[0].getsockname()[:2]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.get_running_loop().sock_sendall(sock, request.encode())
        try:
            yield await opened, sock
        finally:
            done.set()
            sock.close()


async def test_slow_consumer_is_skipped_and_counted() -> None:
    policy = SlowConsumerPolicy()
    async with slow_client() as (ws, _):
        big = b"x" * 500_000  # more than the kernel buffers and write_limit
        broadcast([ws], big, policy=policy)
        assert ws._write_paused
        for _ in range(3):
            broadcast([ws], "missed", policy=policy)
        assert ws.broadcast_skips == 3
        assert policy.skipped == 3
        assert policy.closed == 0
        assert ws.open


async def test_default_policy_counts_too() -> None:
    before = DEFAULT_POLICY.skipped
    async with slow_client() as (ws, _):
        broadcast([ws], b"x" * 500_000)
        broadcast([ws], "missed")
        assert DEFAULT_POLICY.skipped == before + 1
        assert ws.broadcast_skips == 1


async def test_slow_consumer_is_closed_with_1013_past_the_limit() -> None:
    policy = SlowConsumerPolicy(close_after=2)
    async with slow_client() as (ws, _):
        broadcast([ws], b"x" * 500_000, policy=policy)
        broadcast([ws], "1", policy=policy)
        broadcast([ws], "2", policy=policy)
        assert ws.open
        broadcast([ws], "3", policy=policy)
        assert not ws.open
        assert ws.protocol.close_sent == portside.Close(1013, "too slow to keep up")
        assert (policy.skipped, policy.closed, ws.broadcast_skips) == (3, 1, 3)
        broadcast([ws], "4", policy=policy)  # closing: not counted
        assert policy.skipped == 3
        assert "close_after=2" in repr(policy)


async def test_admit_for_other_writers() -> None:
    policy = SlowConsumerPolicy(close_after=5)
    async with slow_client() as (ws, _):
        assert policy.admit(ws)
        ws._broadcast_streak = 2
        assert policy.admit(ws)
        assert ws._broadcast_streak == 0
        broadcast([ws], b"x" * 500_000, policy=policy)
        assert not policy.admit(ws)
        assert policy.skipped == 1


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="close_after"):
        SlowConsumerPolicy(close_after=-1)
    with pytest.raises(ValueError, match="close_after"):
        SlowConsumerPolicy(close_after=True)


async def test_one_compression_per_setting_without_context_takeover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import portside.asyncio.broadcasting as module

    built: list[int] = []
    real = module.PerMessageDeflate  # type: ignore[attr-defined]

    def counting(**kwargs: Any) -> Any:
        built.append(kwargs["local_max_window_bits"])
        return real(**kwargs)

    monkeypatch.setattr(module, "PerMessageDeflate", counting)
    small = portside.Deflate(server_no_context_takeover=True, server_max_window_bits=9)
    large = portside.Deflate(server_no_context_takeover=True, server_max_window_bits=12)
    message = "shared " * 50
    async with (
        clients(3, {"compression": small}) as (a, ca),
        clients(2, {"compression": large}) as (b, cb),
    ):
        broadcast(a | b, message)
        broadcast(a | b, message)
        for client in ca + cb:
            assert [await client.recv(), await client.recv()] == [message, message]
    # One compression per setting and message, not one per connection.
    # (The clients ask for at most 11 bits: the second setting compresses with 11.)
    assert sorted(built) == [9, 9, 11, 11]


async def test_write_frame_writes_encoded_frames() -> None:
    # broadcast()'s write: the C accelerator's, or the pure-Python twin's.
    async with clients(1) as (connections, opened):
        (ws,) = connections
        with pytest.raises(TypeError, match="takes bytes, not bytearray"):
            ws._write_frame(bytearray(b"\x81\x00"))  # type: ignore[arg-type]
        ws._write_frame(b"\x81\x02hi")
        assert await opened[0].recv() == "hi"
