"""portside against Node's ws, both ways.

``make test`` installs ws (pinned in tests/asyncio/node/package.json) into
``tests/asyncio/node/node_modules`` when Node.js and npm are on the machine; these
tests are skipped, with the reason, when they are not.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil

import pytest

import portside
from tests.asyncio.helpers import running, url
from tests.needs import needs

NODE_DIR = pathlib.Path(__file__).with_name("node")
NODE = shutil.which("node")

pytestmark = needs(
    NODE is not None and (NODE_DIR / "node_modules" / "ws").is_dir(),
    "needs Node.js and ws: run `make test` or `npm install` in tests/asyncio/node",
)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_node_client_to_portside_server(compression: str | None) -> None:
    assert NODE is not None
    async with running(compression=compression, max_size=None) as server:
        process = await asyncio.create_subprocess_exec(
            NODE, str(NODE_DIR / "client.js"), url(server), stdout=asyncio.subprocess.PIPE
        )
        output, _ = await process.communicate()
    result = json.loads(output.decode().splitlines()[-1])
    assert result["ok"], result
    assert result["closeCode"] == 1000
    assert ("permessage-deflate" in result["extensions"]) == (compression is not None)


async def test_portside_client_to_node_server() -> None:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(NODE_DIR / "echo_server.js"), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        port = int((await process.stdout.readline()).decode())
        async with portside.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            assert ws.protocol.deflate is not None
            for message in ("hello", "☕" * 5000, b"\x00\x01", bytes(300_000), ""):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag", "ments"])
            assert await ws.recv() == "fragments"
            assert await (await ws.ping()) > 0
        assert ws.close_code == 1000
    finally:
        process.kill()
        await process.wait()
