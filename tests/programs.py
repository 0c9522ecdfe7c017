"""Python programs run as real processes, each on a port of its own.

The examples and the README's code blocks listen on port 8765; the tests run them
on a free port instead (the text ``8765`` replaced), so that two test runs on one
machine (CI runs the suite on several Pythons at once) do not meet.
"""

from __future__ import annotations

import asyncio
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


async def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on ``port`` of localhost."""
    try:
        _, writer = await asyncio.open_connection("localhost", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


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
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(path), stderr=asyncio.subprocess.PIPE
        )
        try:
            while not await port_accepts(port):
                if process.returncode is not None:
                    assert process.stderr is not None
                    error = await process.stderr.read()
                    pytest.fail(f"{name} exited with {process.returncode}: {error.decode()}")
                await asyncio.sleep(0.05)  # the next attempt to connect
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
