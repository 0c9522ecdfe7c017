"""The README's Python code runs as pasted: each block, as a real process.

Servers run on a free port instead of the README's 8765 (see tests/programs.py);
clients talk to them; signals are real.
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import signal
import sys

import pytest

import portside
from tests.programs import free_port, on_port, server_program

README = pathlib.Path(__file__).parent.parent / "README.md"

# What tells each block apart, and the test that runs it.
KINDS = {
    "echo server": "serve_forever()",
    "client": "portside.connect(",
    "health check": "process_request=health_check",
    "graceful shutdown": "add_signal_handler(",
}


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.MULTILINE | re.DOTALL)


def kinds_of(block: str) -> list[str]:
    kinds = [kind for kind, marker in KINDS.items() if marker in block]
    if kinds == ["echo server", "health check"]:
        return ["health check"]  # a server too, with its health check
    return kinds


def block(kind: str) -> str:
    """The README's one block of that kind."""
    (found,) = [text for text in python_blocks() if kinds_of(text) == [kind]]
    return found


def test_every_python_block_is_run() -> None:
    blocks = python_blocks()
    assert len(blocks) >= len(KINDS)
    for text in blocks:
        assert len(kinds_of(text)) == 1, f"a README block no test runs (see KINDS):\n{text}"
    for kind in KINDS:
        block(kind)


async def test_echo_server_and_client() -> None:
    port = free_port()
    async with server_program(on_port(block("echo server"), port), port, "echo.py"):
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            on_port(block("client"), port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await client.communicate()
        assert client.returncode == 0, err.decode()
        assert out == b"hello\n"


async def test_health_check() -> None:
    port = free_port()
    async with server_program(on_port(block("health check"), port), port, "health.py"):
        reader, writer = await asyncio.open_connection("localhost", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b"OK\n"
        async with portside.connect(f"ws://localhost:{port}/") as ws:
            await ws.send("still a WebSocket server")
            assert await ws.recv() == "still a WebSocket server"


async def test_graceful_shutdown() -> None:
    port = free_port()
    async with server_program(
        on_port(block("graceful shutdown"), port), port, "shutdown.py"
    ) as process:
        async with portside.connect(f"ws://localhost:{port}/") as ws:
            await ws.send("before SIGTERM")
            assert await ws.recv() == "before SIGTERM"
            process.send_signal(signal.SIGTERM)
            with pytest.raises(portside.ConnectionClosedOK):
                await ws.recv()
            assert ws.close_code == 1001
        assert await process.wait() == 0
