"""The Python peers' echo servers, and the messages the interoperability tests send.

Both layers' interop tests (tests/asyncio/test_interop.py, tests/sync/test_interop.py)
run portside's clients against these servers: websockets' asyncio server and
aiohttp's. Each is an asynchronous context manager that yields its port; the
threading tests run it in an event loop of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from websockets.asyncio.server import serve as ws_serve

#: Text and binary, empty, multi-byte and large: what the peers echo.
MESSAGES: list[str | bytes] = ["hello", "☕" * 5000, b"\x00\x01", bytes(range(256)) * 1000, ""]


@contextlib.asynccontextmanager
async def websockets_echo_server(compression: str | None) -> AsyncIterator[int]:
    """websockets' asyncio server, echoing; without a message size limit."""

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0, compression=compression, max_size=None) as server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def aiohttp_echo_server(compress: bool) -> AsyncIterator[int]:
    """aiohttp's server, echoing text as text and binary as binary; no size limit."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress, max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def aiohttp_client_echo(address: str, compress: int) -> int | None:
    """Send :data:`MESSAGES` with aiohttp's client, check the echoes; return the close code."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(address, compress=compress, max_msg_size=0) as ws,
    ):
        for message in MESSAGES:
            if isinstance(message, str):
                await ws.send_str(message)
                assert await ws.receive_str() == message
            else:
                await ws.send_bytes(message)
                assert await ws.receive_bytes() == message
        await ws.close()
    return ws.close_code
