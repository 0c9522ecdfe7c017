"""The README's Python code runs as pasted: each block, as a real process.

Servers run on a free port instead of the README's 8765 (see tests/programs.py);
clients talk to them; signals are real.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import signal
import sys

import pytest

import portside
from tests.hub.redis_server import REASON as NEEDS_REDIS
from tests.hub.redis_server import REDIS_SERVER, redis_server
from tests.needs import needs
from tests.programs import free_port, http_get, on_port, server_program

README = pathlib.Path(__file__).parent.parent / "README.md"

# What tells each block apart, and the test that runs it.
KINDS = {
    "echo server": "await server.serve_forever()",
    "client": "portside.connect(",
    "threading echo server": "from portside.sync.server import serve",
    "threading client": "from portside.sync.client import connect",
    "health check": "process_request=health_check",
    "graceful shutdown": "add_signal_handler(",
    "pub/sub through Redis": "portside.Hub(",
}


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.MULTILINE | re.DOTALL)


def kinds_of(block: str) -> list[str]:
    kinds = [kind for kind, marker in KINDS.items() if marker in block]
    if len(kinds) == 2 and kinds[0] == "echo server":
        return kinds[1:]  # a server too, with its health check or its hub
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


@pytest.mark.parametrize(
    ("server", "client"),
    [("echo server", "client"), ("threading echo server", "threading client")],
)
async def test_echo_server_and_client(server: str, client: str) -> None:
    port = free_port()
    async with server_program(on_port(block(server), port), port, "echo.py"):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            on_port(block(client), port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert out == b"hello\n"


async def test_health_check() -> None:
    port = free_port()
    async with server_program(on_port(block("health check"), port), port, "health.py"):
        head, body = await http_get(port, "/healthz")
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


@needs(REDIS_SERVER, NEEDS_REDIS)
async def test_pub_sub_through_redis() -> None:
    port = free_port()
    async with redis_server() as redis:
        source = on_port(block("pub/sub through Redis"), port)
        assert "redis://localhost:6379/0" in source
        source = source.replace("redis://localhost:6379/0", redis.url)
        async with (
            server_program(source, port, "hub.py"),
            portside.connect(f"ws://localhost:{port}/") as alice,
            portside.connect(f"ws://localhost:{port}/") as bob,
        ):

            async def next_data(ws: portside.ClientConnection) -> object:
                # The hub's JSON envelope (docs/hub.md): skip the other kinds.
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "message":
                        return frame["data"]

            # Each is subscribed once its first message comes back to it.
            for ws, name in ((alice, "alice"), (bob, "bob")):
                await ws.send(f"{name} is here")
                while await next_data(ws) != f"{name} is here":
                    pass
            await alice.send("hello through Redis")
            assert await next_data(bob) == "hello through Redis"
