"""The deployment page's three programs, run as real processes with real signals."""

from __future__ import annotations

import asyncio
import pathlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect as websockets_connect

import portside
from tests.programs import free_port, on_port, server_program

ROOT = pathlib.Path(__file__).parent.parent
SEED = ROOT / "examples" / "seed"


@asynccontextmanager
async def example(name: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """Run a seed program, on a free port instead of its 8765: the process, the port."""
    port = free_port()
    source = on_port((SEED / name).read_text(), port)
    async with server_program(source, port, name) as process:
        yield process, port


@pytest.mark.parametrize("name", ["deployment_shutdown.py", "deployment_shutdown_legacy.py"])
async def test_sigterm_closes_clients_with_1001_and_exits_0(name: str) -> None:
    async with example(name) as (process, port):
        ours = await portside.connect(f"ws://localhost:{port}/")
        theirs = await websockets_connect(f"ws://localhost:{port}/")
        for ws in (ours, theirs):
            await ws.send("before shutdown")
            assert await ws.recv() == "before shutdown"
        process.send_signal(signal.SIGTERM)
        with pytest.raises(portside.ConnectionClosedOK):
            await ours.recv()
        assert ours.close_code == 1001
        await theirs.wait_closed()
        assert theirs.close_code == 1001
        assert await process.wait() == 0


async def test_health_check_answers_on_the_websocket_port() -> None:
    async with example("deployment_health_check.py") as (process, port):
        async with portside.connect(f"ws://localhost:{port}/") as ws:
            reader, writer = await asyncio.open_connection("localhost", port)
            writer.write(b"GET /health/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            response = await reader.read()
            writer.close()
            await writer.wait_closed()
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert body == b"OK\n"
            await ws.send("while checked")
            assert await ws.recv() == "while checked"
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == -signal.SIGTERM
