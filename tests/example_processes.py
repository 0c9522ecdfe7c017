"""Running the example servers as real processes, for the tests of examples/.

The examples listen on websockets' port, 8765 (or on a Unix socket) and
announce nothing: :func:`run_example` starts one and polls its socket until it
accepts connections, or fails the test with what the program printed if it
dies first.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

#: The port of the examples (websockets' examples use it too).
PORT = 8765


async def accepts(unix: str | None = None) -> bool:
    """Tell whether the examples' port (or the Unix socket ``unix``) accepts a connection."""
    try:
        if unix is None:
            _, writer = await asyncio.open_connection("localhost", PORT)
        else:
            _, writer = await asyncio.open_unix_connection(unix)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@asynccontextmanager
async def run_example(
    path: pathlib.Path, *args: str, unix: str | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run the server example at ``path`` until it listens; kill it afterwards."""
    if unix is None and await accepts():
        pytest.fail(f"port {PORT} is already in use; the examples need it")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(path), *args, stderr=asyncio.subprocess.PIPE
    )
    try:
        # Wait for the socket: poll it until it accepts or the program dies.
        while not await accepts(unix):
            if process.returncode is not None:
                assert process.stderr is not None
                error = (await process.stderr.read()).decode()
                pytest.fail(f"{path.name} exited with {process.returncode}: {error}")
            await asyncio.sleep(0.02)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
