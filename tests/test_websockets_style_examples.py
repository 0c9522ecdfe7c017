"""examples/websockets_style/: websockets' documented patterns on portside, each
run as a real process against a websockets 17.4 peer."""

from __future__ import annotations

import asyncio
import http
import os
import pathlib
import shutil
import signal
import ssl
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from websockets.asyncio.client import connect, unix_connect
from websockets.asyncio.server import ServerConnection, basic_auth, serve, unix_serve
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.headers import build_authorization_basic
from websockets.version import version as websockets_version

from tests.programs import PORT, listening_sockets, run_program, send_raw

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "websockets_style"
URI = f"ws://localhost:{PORT}"
CERT = EXAMPLES / "localhost.pem"
# Two suites on one machine (CI runs several Pythons at once) take turns on it.
pytestmark = pytest.mark.portside_port(PORT)
# The reconnecting client waits 0.1 s between attempts instead of 0-5 s first.
FAST_BACKOFF = {"PORTSIDE_BACKOFF_INITIAL_DELAY": "0.1", "PORTSIDE_BACKOFF_MIN_DELAY": "0.1"}


def example(
    name: str, *args: str, directory: pathlib.Path = EXAMPLES, unix: str | None = None
) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """Run a server example until it listens; stop it afterwards."""
    return run_program(directory / name, *args, port=PORT, unix=unix)


async def client_example(name: str, *args: str, **env: str) -> str:
    """Run a client example to its end; return what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def their_hello(websocket: ServerConnection) -> None:
    name = await websocket.recv()
    await websocket.send(f"Hello {name!s}!")


async def their_echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


def tls_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose)
    if purpose is ssl.Purpose.CLIENT_AUTH:
        context.load_cert_chain(CERT)
    else:
        context.load_verify_locations(CERT)
    return context


async def test_hello_server() -> None:
    async with example("hello_server.py"), connect(URI) as websocket:
        await websocket.send("websockets")
        assert await websocket.recv() == "Hello websockets!"


async def test_hello_client() -> None:
    async with serve(their_hello, "localhost", PORT):
        out = await client_example("hello_client.py", "portside")
    assert out == ">>> portside\n<<< Hello portside!\n"


async def test_echo_server() -> None:
    async with example("echo_server.py"), connect(URI) as websocket:
        for message in ("text", b"\x00binary"):
            await websocket.send(message)
            assert await websocket.recv() == message


async def test_echo_client() -> None:
    async with serve(their_echo, "localhost", PORT):
        assert await client_example("echo_client.py") == "Hello world!\n"


async def test_broadcast_to_a_set_of_connections() -> None:
    async with example("broadcast_server.py"):
        clients = [await connect(URI) for _ in range(3)]
        try:
            for websocket in clients:
                first = int(str(await websocket.recv()).split()[1])
                second = await websocket.recv()
                assert second == f"tick {first + 1}"
        finally:
            for websocket in clients:
                await websocket.close()


async def test_tls_server() -> None:
    async with example("tls_server.py"):
        context = tls_context(ssl.Purpose.SERVER_AUTH)
        async with connect(f"wss://localhost:{PORT}", ssl=context) as websocket:
            await websocket.send("websockets")
            assert await websocket.recv() == "Hello websockets!"
        # Python 3.10's TLS transport counts as unclosed (a ResourceWarning when
        # collected, in whichever test) unless close() is called, which
        # websockets' client may not do when the server closes first; 3.11
        # marks it closed itself. (portside's connections close it.)
        websocket.transport.close()


async def test_tls_client() -> None:
    async with serve(their_hello, "localhost", PORT, ssl=tls_context(ssl.Purpose.CLIENT_AUTH)):
        assert await client_example("tls_client.py") == "Hello TLS!\n"


async def test_health_check() -> None:
    async with example("health_check_server.py"):
        response = await send_raw(
            "localhost", PORT, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b"\r\n\r\nOK\n")
        async with connect(URI) as websocket:
            await websocket.send("still a WebSocket server")
            assert await websocket.recv() == "still a WebSocket server"


async def test_sigterm_shutdown() -> None:
    async with example("shutdown_server.py") as process:
        async with connect(URI) as websocket:
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosedOK):
                await websocket.recv()
            assert websocket.close_code == 1001
        assert await process.wait() == 0


async def test_reuse_port_with_two_processes() -> None:
    async with example("reuse_port_server.py") as first:
        # The second process listens on the same port: it starts, and stays.
        second = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "reuse_port_server.py")
        )
        try:
            # Wait until the second process listens too: twice the sockets.
            alone = listening_sockets(PORT)
            while listening_sockets(PORT) < 2 * alone:
                assert second.returncode is None, "the second process exited"
                await asyncio.sleep(0.02)
            pids = {first.pid, second.pid}
            served: set[int] = set()
            # The kernel spreads connections over both listening sockets.
            for _ in range(200):
                async with connect(URI) as websocket:
                    served.add(int(str(await websocket.recv()).split()[-1]))
                if served == pids:
                    break
            assert served == pids
        finally:
            second.kill()
            await second.wait()


async def test_unix_server(tmp_path: pathlib.Path) -> None:
    # A copy in a temporary directory: the socket is created beside the program.
    shutil.copy(EXAMPLES / "unix_server.py", tmp_path)
    socket_path = str(tmp_path / "socket")
    async with (
        example("unix_server.py", directory=tmp_path, unix=socket_path),
        unix_connect(socket_path) as websocket,
    ):
        await websocket.send("websockets")
        assert await websocket.recv() == "Hello websockets!"


async def test_unix_client(tmp_path: pathlib.Path) -> None:
    shutil.copy(EXAMPLES / "unix_client.py", tmp_path)
    async with unix_serve(their_hello, str(tmp_path / "socket")):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(tmp_path / "unix_client.py"), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
    assert out == b"Hello Unix!\n"


async def test_router_with_two_paths() -> None:
    async with example("router_server.py"):
        async with connect(f"{URI}/time") as websocket:
            assert await websocket.recv() == "it is time"
        async with connect(f"{URI}/channel/42") as websocket:
            assert await websocket.recv() == "channel 42"
        with pytest.raises(InvalidStatus) as info:
            await connect(f"{URI}/nowhere")
        assert info.value.response.status_code == http.HTTPStatus.NOT_FOUND


async def test_basic_auth_server() -> None:
    async with example("basic_auth_server.py"):
        if websockets_version.startswith("16."):
            # websockets 16 (Python 3.10's) sends the URI's user info as it is,
            # without unquoting it: the header, then.
            header = build_authorization_basic("mary", "p@ssw0rd")
            logged_in = connect(URI, additional_headers={"Authorization": header})
        else:
            logged_in = connect(f"ws://mary:p%40ssw0rd@localhost:{PORT}")
        async with logged_in as websocket:
            assert await websocket.recv() == "Hello mary!"
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://mary:wrong@localhost:{PORT}")
        assert info.value.response.status_code == http.HTTPStatus.UNAUTHORIZED


async def test_basic_auth_client() -> None:
    async def hello(websocket: Any) -> None:
        await websocket.send(f"Hello {websocket.username}!")

    auth = basic_auth(realm="example", credentials=("mary", "p@ssw0rd"))
    async with serve(hello, "localhost", PORT, process_request=auth):
        assert await client_example("basic_auth_client.py") == "Hello mary!\n"


async def test_reconnecting_client_survives_a_server_restart() -> None:
    async def count(websocket: ServerConnection) -> None:
        await websocket.send(incarnation)
        await websocket.wait_closed()

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "reconnect_client.py"),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **FAST_BACKOFF},
    )
    assert process.stdout is not None
    try:
        for incarnation in ("first server", "second server"):
            # The client is already trying; the server comes up, then goes away.
            async with serve(count, "localhost", PORT):
                line = await process.stdout.readline()
                assert line.decode() == f"{incarnation}\n"
    finally:
        process.kill()
        await process.wait()
