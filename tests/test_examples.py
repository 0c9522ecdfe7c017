"""The deployment page's three programs, run as real processes with real signals."""

from __future__ import annotations

import asyncio
import pathlib
import signal
from contextlib import AbstractAsyncContextManager

import pytest
from websockets.asyncio.client import connect as websockets_connect

import portside
from tests.example_processes import PORT, run_example

ROOT = pathlib.Path(__file__).parent.parent
SEED = ROOT / "examples" / "seed"


def example(name: str) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
    return run_example(SEED / name)


@pytest.mark.parametrize("name", ["deployment_shutdown.py", "deployment_shutdown_legacy.py"])
async def test_sigterm_closes_clients_with_1001_and_exits_0(name: str) -> None:
    async with example(name) as process:
        ours = await portside.connect(f"ws://localhost:{PORT}/")
        theirs = await websockets_connect(f"ws://localhost:{PORT}/")
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
    async with example("deployment_health_check.py") as process:
        async with portside.connect(f"ws://localhost:{PORT}/") as ws:
            reader, writer = await asyncio.open_connection("localhost", PORT)
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
