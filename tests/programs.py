"""Python programs run as real processes, each on a port of its own.

The examples and the README's code blocks listen on port 8765; the tests run them
on a free port instead (the text ``8765`` replaced), so that two test runs on one
machine (CI runs the suite on several Pythons at once) do not meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

PORT = 8765  # the port the programs are written with


def free_port() -> int:
    """A TCP port nothing listens on, on localhost."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def on_port(source: str, port: int) -> str:
    """The program's source, listening on (or connecting to) ``port``."""
    assert str(PORT) in source, "the program does not use port 8765"
    return source.replace(str(PORT), str(port))


async def send_raw(host: str, port: int, data: bytes) -> bytes:
    """Send ``data`` as it is to ``host:port``; return all the server sends until it closes."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    return response


async def http_get(port: int, path: str) -> tuple[bytes, bytes]:
    """GET ``path`` from the server on ``port`` of localhost; return the head and the body.

    The request asks the server to close the connection, which ends the body.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    head, _, body = (await send_raw("localhost", port, request.encode())).partition(b"\r\n\r\n")
    return head, body


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (IPv4 and IPv6), from /proc."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # LISTEN
                    count += 1
    return count


async def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on ``port`` of localhost."""
    return await accepts(port)


async def accepts(port: int = PORT, unix: str | None = None) -> bool:
    """Whether ``port`` of localhost (or the Unix socket at ``unix``) accepts a connection."""
    try:
        if unix is None:
            _, writer = await asyncio.open_connection("localhost", port)
        else:
            _, writer = await asyncio.open_unix_connection(unix)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@asynccontextmanager
async def run_program(
    path: pathlib.Path, *args: str, port: int = PORT, unix: str | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run the server program at ``path`` until it accepts connections on ``port`` (or ``unix``).

    Fails the test if the port is taken already (the program could not listen,
    and another would answer) or the program exits first; kills it afterwards if
    it runs.
    """
    if unix is None and await accepts(port):
        pytest.fail(f"port {port} is already in use; {path.name} needs it")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(path), *args, stderr=asyncio.subprocess.PIPE
    )
    try:
        while not await accepts(port, unix):
            if process.returncode is not None:
                assert process.stderr is not None
                error = await process.stderr.read()
                pytest.fail(f"{path.name} exited with {process.returncode}: {error.decode()}")
            await asyncio.sleep(0.05)  # the next attempt to connect
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def server_program(
    source: str, port: int, name: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``source``, a server listening on ``port``, until it accepts connections.

    Fails the test if the program exits first; kills it afterwards if it runs.
    """
    with tempfile.TemporaryDirectory(prefix="portside-program-") as directory:
        path = pathlib.Path(directory) / name
        path.write_text(source)
        async with run_program(path, port=port) as process:
            yield process
