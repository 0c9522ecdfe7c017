"""The threading API against the Python peers, both ways: websockets (sync and asyncio), aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_async_connect

from portside.exceptions import ConnectionClosedError
from portside.sync.client import ClientConnection, connect
from portside.sync.server import ServerConnection
from tests.peers import (
    MESSAGES,
    aiohttp_client_echo,
    aiohttp_echo_server,
    websockets_echo_server,
)
from tests.sync.helpers import (
    TIMEOUT,
    running,
    url,
    websockets_sync_client,
    websockets_sync_server,
)

# Peers' clients against portside's threading server.


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_sync_client_to_portside_server(compression: str | None) -> None:
    with running(compression=compression, max_size=None) as server:
        with websockets_sync_client(url(server), compression=compression, max_size=None) as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert extensions.startswith("permessage-deflate") == (compression is not None)
            for message in MESSAGES:
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
            ws.send(["frag", "ments"])
            assert ws.recv(timeout=TIMEOUT) == "fragments"
            assert ws.ping().wait(TIMEOUT)
            ws.close(1001, "bye")
        assert ws.close_code == 1001


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_asyncio_client_to_portside_server(compression: str | None) -> None:
    async def talk(address: str) -> int | None:
        async with ws_async_connect(address, compression=compression, max_size=None) as ws:
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send([b"frag", b"ments"])
            assert await ws.recv() == b"fragments"
        return ws.close_code

    with running(compression=compression, max_size=None) as server:
        assert asyncio.run(talk(url(server))) == 1000


def test_websockets_fragments_are_streamed_to_portside() -> None:
    release = threading.Event()
    streamed: list[str] = []

    def handler(ws: ServerConnection) -> None:
        for fragment in ws.recv_streaming():
            streamed.append(str(fragment))
            if len(streamed) == 1:
                release.set()
        ws.send("".join(streamed))

    def pieces() -> Iterator[str]:
        yield "first"
        # The second fragment waits until the server has the first one.
        assert release.wait(TIMEOUT)
        yield "second"

    with running(handler) as server, websockets_sync_client(url(server)) as ws:
        ws.send(pieces())
        assert ws.recv(timeout=TIMEOUT) == "firstsecond"
    assert streamed[:2] == ["first", "second"]


@pytest.mark.parametrize("compress", [15, 0])
def test_aiohttp_client_to_portside_server(compress: int) -> None:
    with running(max_size=None) as server:
        assert asyncio.run(aiohttp_client_echo(url(server), compress)) == 1000


# portside's threading client against the peers' servers.


def websockets_echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_portside_client_to_websockets_sync_server(compression: str | None) -> None:
    with websockets_sync_server(websockets_echo, compression=compression, max_size=None) as port:
        with connect(f"ws://127.0.0.1:{port}/", compression=compression, max_size=None) as ws:
            assert (ws.protocol.deflate is not None) == (compression is not None)
            check_echo(ws, [b"frag", b"ments"], b"fragments")
            assert ws.ping().wait(TIMEOUT)
            assert ws.latency > 0
        assert ws.close_code == 1000


class LoopThread:
    """An asyncio event loop running in a thread, for the peers' asyncio servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def __exit__(self, *exc: object) -> None:
        # The executor's threads too (aiohttp resolves names in one).
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@contextlib.contextmanager
def in_a_loop_thread(server: contextlib.AbstractAsyncContextManager[int]) -> Iterator[int]:
    """Run one of tests/peers.py's servers in an event loop of its own; yield its port."""
    with LoopThread() as loop:
        port: int = loop.run(server.__aenter__())
        try:
            yield port
        finally:
            loop.run(server.__aexit__(None, None, None))


def check_echo(
    ws: ClientConnection, fragments: list[str] | list[bytes], whole: str | bytes
) -> None:
    """Send the messages, then ``fragments`` as one message; check that each comes back."""
    for message in MESSAGES:
        ws.send(message)
        assert ws.recv(timeout=TIMEOUT) == message
    ws.send(fragments)
    assert ws.recv(timeout=TIMEOUT) == whole


@pytest.mark.parametrize("compression", ["deflate", None])
def test_portside_client_to_websockets_asyncio_server(compression: str | None) -> None:
    with in_a_loop_thread(websockets_echo_server(compression)) as port:
        with connect(f"ws://127.0.0.1:{port}/", compression=compression, max_size=None) as ws:
            check_echo(ws, ["frag", "ments"], "fragments")
        assert ws.close_code == 1000


@pytest.mark.parametrize("compress", [True, False])
def test_portside_client_to_aiohttp_server(compress: bool) -> None:
    with in_a_loop_thread(aiohttp_echo_server(compress)) as port:
        with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            assert (ws.protocol.deflate is not None) == compress
            check_echo(ws, ["frag", "ments"], "fragments")
        assert ws.close_code == 1000


def test_websockets_server_closing_with_an_error_code() -> None:
    def handler(ws: Any) -> None:
        ws.close(4321, "custom")

    with websockets_sync_server(handler) as port:
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            with pytest.raises(ConnectionClosedError) as raised:
                ws.recv(timeout=TIMEOUT)
        assert (raised.value.code, raised.value.reason) == (4321, "custom")
