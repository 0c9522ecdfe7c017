"""The parts of websockets' connection API beyond the plain recv() and send():
recv(decode=...), recv_streaming(), send(..., text=...)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import portside
from tests.asyncio.helpers import pair


async def test_recv_decode() -> None:
    async with pair() as (server, client):
        await server.send(b"caf\xc3\xa9")
        await server.send("thé")
        await server.send(b"raw")
        await server.send("text")
        assert await client.recv(decode=True) == "café"
        assert await client.recv(decode=False) == "thé".encode()
        assert await client.recv(None) == b"raw"
        assert await client.recv(False) == b"text"  # decode is the first argument


async def test_recv_decode_while_waiting() -> None:
    async with pair() as (server, client):
        waiting = asyncio.create_task(client.recv(decode=False))
        while client._waiter is None:
            await asyncio.sleep(0)  # until the task waits for a message
        await server.send("later")
        assert await waiting == b"later"


async def test_recv_decode_invalid_utf8() -> None:
    async with pair() as (server, client):
        await server.send(b"\xff")
        with pytest.raises(UnicodeDecodeError):
            await client.recv(decode=True)


async def test_recv_arguments() -> None:
    async with pair() as (_, client):
        with pytest.raises(TypeError):
            await client.recv(decode=True, nope=1)
        with pytest.raises(TypeError):
            await client.recv(None, decode=True)
        with pytest.raises(TypeError):
            await client.recv(None, False, 3)


async def test_recv_streaming() -> None:
    async with pair() as (server, client):
        await server.send(["frag", "ment"])
        await server.send(b"bin")
        parts = [part async for part in client.recv_streaming()]
        assert "".join(str(p) for p in parts) == "fragment"
        assert [part async for part in client.recv_streaming(decode=True)] == ["bin"]


async def test_send_text_override() -> None:
    async with pair() as (server, client):
        await client.send(b"caf\xc3\xa9", text=True)
        await client.send("binary", text=False)
        await client.send(message=b"kw", text=None)
        assert await server.recv() == "café"
        assert await server.recv() == b"binary"
        assert await server.recv() == b"kw"


async def test_send_text_override_for_fragments() -> None:
    async def parts() -> AsyncIterator[str]:
        yield "as "
        yield "bytes"

    async with pair() as (server, client):
        await client.send([b"te", b"xt"], text=True)
        await client.send(parts(), text=False)
        await client.send(["plain ", "list"], text=False)
        assert await server.recv() == "text"
        assert await server.recv() == b"as bytes"
        assert await server.recv() == b"plain list"


async def test_send_text_errors() -> None:
    async with pair() as (_, client):
        with pytest.raises(TypeError, match="not dict"):
            await client.send({"a": 1}, text=True)
        with pytest.raises(TypeError, match="unsupported type: int"):
            await client.send(42, text=False)
        with pytest.raises(TypeError):
            await client.send()
        with pytest.raises(TypeError):
            await client.send("a", message="b")
        with pytest.raises(TypeError):
            await client.send("a", True)  # text is keyword-only
        with pytest.raises(TypeError):
            await client.send("a", bogus=1)


async def test_iteration_still_ends_on_normal_closure() -> None:
    async with pair() as (server, client):
        await server.send("last")
        await server.close()
        assert [message async for message in client] == ["last"]
        with pytest.raises(portside.ConnectionClosedOK):
            await client.recv(decode=True)
