"""async for ws in connect(...): reconnection over real sockets."""

from __future__ import annotations

import asyncio
import http
import logging
import socket
from collections.abc import Generator
from typing import Any

import pytest

import portside
from portside.asyncio.client import process_exception
from tests.asyncio.helpers import url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Delays:
    """reconnect_delays that records how often the loop waited."""

    def __init__(self) -> None:
        self.started = 0
        self.used: list[float] = []

    def __call__(self) -> Generator[float, None, None]:
        self.started += 1
        while True:
            self.used.append(0.01)
            yield 0.01


async def first(connect: Any) -> None:
    async for _ in connect:  # pragma: no cover - the tests expect no connection
        pytest.fail("connected")


async def hello(ws: portside.ServerConnection) -> None:
    await ws.send("hello")
    await ws.wait_closed()


async def test_reconnects_after_the_server_restarts(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    restarted: list[asyncio.Task[portside.Server]] = []

    class RestartOnFirstDelay(Delays):
        def __call__(self) -> Generator[float, None, None]:
            # The client failed to connect: bring the server back.
            restarted.append(asyncio.create_task(start(port)))
            return super().__call__()

    delays = RestartOnFirstDelay()
    server = await portside.serve(hello, "127.0.0.1", port)
    greetings = 0
    with caplog.at_level(logging.INFO, "portside.client"):
        async for ws in portside.connect(f"ws://127.0.0.1:{port}/", reconnect_delays=delays):
            try:
                assert await ws.recv() == "hello"
                greetings += 1
                if greetings == 2:
                    break
                server.close()  # the connection closes with 1001, then nothing listens
                await server.wait_closed()
                await ws.recv()
            except portside.ConnectionClosed:
                continue
    server = await restarted[0]
    server.close()
    await server.wait_closed()
    assert greetings == 2
    assert delays.used, "the loop waited between failed attempts"
    assert "connect failed; reconnecting in 0.0 seconds: ConnectionRefusedError" in caplog.text


async def start(port: int) -> portside.Server:
    return await portside.serve(hello, "127.0.0.1", port)


async def test_fatal_error_ends_the_loop() -> None:
    def refuse(connection: portside.ServerConnection, request: portside.Request) -> Any:
        return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n")

    delays = Delays()
    async with portside.serve(hello, "127.0.0.1", 0, process_request=refuse) as server:
        with pytest.raises(portside.InvalidStatus):
            await first(portside.connect(url(server), reconnect_delays=delays))
    assert delays.used == []


async def test_5xx_is_retried() -> None:
    attempts = 0

    def flaky(connection: portside.ServerConnection, request: portside.Request) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "later\n")
        return None

    async with portside.serve(hello, "127.0.0.1", 0, process_request=flaky) as server:
        async for ws in portside.connect(url(server), reconnect_delays=Delays()):
            assert await ws.recv() == "hello"
            break
    assert attempts == 3


@pytest.mark.parametrize("style", ["return", "raise", "replace"])
async def test_process_exception_overrides(style: str) -> None:
    def refuse(connection: portside.ServerConnection, request: portside.Request) -> Any:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "no\n")

    calls: list[Exception] = []

    def decide(exc: Exception) -> Exception | None:
        calls.append(exc)
        if len(calls) < 2:
            return None  # retry a 404, unlike the default
        if style == "raise":
            raise RuntimeError("giving up")
        if style == "replace":
            return RuntimeError("giving up")
        return process_exception(exc)

    async with portside.serve(hello, "127.0.0.1", 0, process_request=refuse) as server:
        connect = portside.connect(url(server), process_exception=decide, reconnect_delays=Delays())
        expected: type[Exception] = portside.InvalidStatus if style == "return" else RuntimeError
        with pytest.raises(expected) as info:
            await first(connect)
    assert len(calls) == 2
    if style == "replace":
        assert info.value.__cause__ is calls[-1]


async def test_close_code_asking_to_retry_later_waits() -> None:
    first = True

    async def busy(ws: portside.ServerConnection) -> None:
        nonlocal first
        if first:
            first = False
            await ws.close(1013, "try again later")
        else:
            await ws.send("welcome")

    delays = Delays()
    async with portside.serve(busy, "127.0.0.1", 0) as server:
        async for ws in portside.connect(url(server), reconnect_delays=delays):
            try:
                assert await ws.recv() == "welcome"
                break
            except portside.ConnectionClosed:
                assert ws.close_code == 1013
                continue
    assert delays.used == [0.01]


async def test_successful_connection_resets_backoff() -> None:
    count = 0

    async def bye(ws: portside.ServerConnection) -> None:
        nonlocal count
        count += 1
        await ws.close(1000)

    delays = Delays()
    async with portside.serve(bye, "127.0.0.1", 0) as server:
        async for ws in portside.connect(url(server), reconnect_delays=delays):
            await ws.wait_closed()
            if count == 3:
                break
    assert delays.used == []


async def test_open_timeout_is_the_builtin_timeout_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError, match="timed out during opening handshake"):
            await portside.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.05)


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="process_exception must be callable"):
        portside.connect("ws://localhost/", process_exception=42)
    with pytest.raises(TypeError, match="reconnect_delays must be callable"):
        portside.connect("ws://localhost/", reconnect_delays=[1, 2])
