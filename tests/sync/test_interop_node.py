"""The threading API against Node's ws, both ways.

``make install`` installs ws (pinned in tests/asyncio/node/package.json) into
``tests/asyncio/node/node_modules`` when Node.js and npm are on the machine.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

from portside.sync.client import connect
from portside.sync.server import ServerConnection
from tests.needs import needs
from tests.sync.helpers import TIMEOUT, running, url

NODE_DIR = pathlib.Path(__file__).parent.parent / "asyncio" / "node"
NODE = shutil.which("node")

pytestmark = needs(
    NODE is not None and (NODE_DIR / "node_modules" / "ws").is_dir(),
    "needs Node.js and ws: run `make install` or `npm install` in tests/asyncio/node",
)


def run_node(script: str, address: str) -> dict[str, object]:
    assert NODE is not None
    output = subprocess.run(
        [NODE, str(NODE_DIR / script), address],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
        check=False,
    ).stdout
    result: dict[str, object] = json.loads(output.splitlines()[-1])
    return result


@pytest.mark.parametrize("compression", ["deflate", None])
def test_node_client_to_portside_server(compression: str | None) -> None:
    with running(compression=compression, max_size=None) as server:
        result = run_node("client.js", url(server))
    assert result["ok"], result
    assert result["closeCode"] == 1000
    assert ("permessage-deflate" in str(result["extensions"])) == (compression is not None)


def test_node_fragments_are_streamed_to_portside() -> None:
    def handler(ws: ServerConnection) -> None:
        fragments: list[str] = []
        for fragment in ws.recv_streaming(decode=True):
            fragments.append(fragment)
            if len(fragments) == 1:
                # Node sends the last fragment only after this answer.
                ws.send(f"got {fragment}")
        ws.send("".join(fragments))
        ws.recv(timeout=TIMEOUT)

    with running(handler) as server:
        result = run_node("fragments_client.js", url(server))
    assert result["ok"], result
    assert result["closeCode"] == 1000


def test_portside_client_to_node_server() -> None:
    assert NODE is not None
    process = subprocess.Popen(
        [NODE, str(NODE_DIR / "echo_server.js")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            assert ws.protocol.deflate is not None
            for message in ("hello", "☕" * 5000, b"\x00\x01", bytes(300_000), ""):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
            ws.send(["frag", "ments"])
            assert ws.recv(timeout=TIMEOUT) == "fragments"
            assert ws.ping().wait(TIMEOUT)
        assert ws.close_code == 1000
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
