"""portside against the Python peers, both ways: websockets and aiohttp."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect as ws_connect

import portside
from tests.asyncio.helpers import running, url
from tests.peers import (
    MESSAGES,
    aiohttp_client_echo,
    aiohttp_echo_server,
    websockets_echo_server,
)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_websockets_client_to_portside_server(compression: str | None) -> None:
    async with running(compression=compression) as server:
        async with ws_connect(url(server), compression=compression, max_size=None) as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert extensions.startswith("permessage-deflate") == (compression is not None)
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag", "ments"])
            assert await ws.recv() == "fragments"
            await ws.close(1001, "bye")
        assert ws.close_code == 1001


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_portside_client_to_websockets_server(compression: str | None) -> None:
    async with websockets_echo_server(compression) as port:
        async with portside.connect(
            f"ws://127.0.0.1:{port}/", compression=compression, max_size=None
        ) as ws:
            assert (ws.protocol.deflate is not None) == (compression is not None)
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send([b"frag", b"ments"])
            assert await ws.recv() == b"fragments"
            latency = await (await ws.ping())
            assert latency > 0
        assert ws.close_code == 1000


@pytest.mark.parametrize("compress", [15, 0])
async def test_aiohttp_client_to_portside_server(compress: int) -> None:
    async with running() as server:
        assert await aiohttp_client_echo(url(server), compress) == 1000


@pytest.mark.parametrize("compress", [True, False])
async def test_portside_client_to_aiohttp_server(compress: bool) -> None:
    async with aiohttp_echo_server(compress) as port:
        async with portside.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            assert (ws.protocol.deflate is not None) == compress
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.close()
            assert ws.close_code == 1000


async def test_many_clients_at_once() -> None:
    async def talk(server: portside.Server, n: int) -> None:
        async with ws_connect(url(server)) as ws:
            for i in range(20):
                await ws.send(f"{n}:{i}")
                assert await ws.recv() == f"{n}:{i}"

    async with running() as server:
        await asyncio.gather(*(talk(server, n) for n in range(50)))
