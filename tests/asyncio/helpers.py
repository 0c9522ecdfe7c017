"""Helpers for tests of the asyncio layer over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import portside
from tests.framing import unmask_frames, upgrade_request


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class Stubborn:
    """A handler that waits until it is cancelled; ``cancelled`` is set when it is."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def __call__(self, ws: portside.ServerConnection) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def url(server: portside.Server, path: str = "/") -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}{path}"


@asynccontextmanager
async def running(handler: Any = echo, **kwargs: Any) -> AsyncIterator[portside.Server]:
    kwargs.setdefault("ping_interval", None)
    async with portside.serve(handler, "127.0.0.1", 0, **kwargs) as server:
        yield server


@asynccontextmanager
async def pair(**kwargs: Any) -> AsyncIterator[tuple[portside.ServerConnection, Any]]:
    """A server connection whose handler waits, and the client connected to it."""
    opened: asyncio.Future[portside.ServerConnection] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        opened.set_result(ws)
        await done.wait()

    async with running(handler, **kwargs) as server, portside.connect(url(server)) as client:
        try:
            yield await opened, client
        finally:
            done.set()


class RawClient:
    """A hand-driven client: sends exactly the bytes a test wants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, server: portside.Server, path: str = "/", extra: str = "", handshake: bool = True
    ) -> RawClient:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        if handshake:
            writer.write(upgrade_request(host, port, path, extra))
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
        return client

    @property
    def transport(self) -> asyncio.Transport:
        return cast(asyncio.Transport, self.writer.transport)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """Read the server's next frame: its first byte (FIN, RSV, opcode) and payload."""

        async def read() -> tuple[int, bytes]:
            head = await self.reader.readexactly(2)
            size = head[1] & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8), "big")
            return head[0], await self.reader.readexactly(size)

        return await asyncio.wait_for(read(), timeout)

    async def read_until_closed(self) -> list[tuple[int, int, bytes]]:
        """Read every frame until the server closes the TCP connection."""
        data = await self.reader.read()
        return unmask_frames(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
