"""Hostile peers: what each gets, measured on a server in a process of its own.

Each case has its stated answer (docs/security.md): the close code or the
timeout, one log line and no traceback, and memory that stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct

import portside
from tests.asyncio.server_process import ServerProcess
from tests.framing import client_frame, unmask_frames

BINARY, CLOSE = 2, 8

MiB = 2**20


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that completed the opening handshake, driven by hand."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def round_trip(server: ServerProcess) -> None:
    """An echo on a new connection: once it is back, the server has read what
    was sent to it before on other connections (loopback delivers at once, and
    each turn of the event loop reads every socket that is ready)."""
    async with portside.connect(server.url) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"


def announce(length: int, payload: bytes = b"") -> bytes:
    """A masked binary frame's header announcing ``length`` bytes, then ``payload``."""
    return client_frame(BINARY, payload, length=length)[: 14 + len(payload)]


async def read_to_the_end(reader: asyncio.StreamReader) -> bytes:
    """What the server sent until it closed the connection.

    A server that closes a socket with unread bytes in it sends a RST, which the
    reader reports after the bytes received before it (not with read(), which
    would drop them).
    """
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(2**16):
            data += chunk
    return data


def close_code(data: bytes) -> int:
    """The code of the Close frame that ends ``data``, the frames a server sent."""
    frames = unmask_frames(data)
    assert frames, "no frame"
    _, opcode, payload = frames[-1]
    assert opcode == CLOSE, frames[-1]
    code: int = struct.unpack("!H", payload[:2])[0]
    return code


def assert_quiet(log: list[str], expected: str) -> None:
    """Exactly one line of the log is about the case, and nothing went wrong."""
    assert sum(expected in line for line in log) == 1, log
    for line in log:
        assert "Traceback" not in line, log
        assert "Fatal error" not in line, log
        assert not line.startswith(("ERROR", "CRITICAL")), log


# A frame header that lies: memory follows the bytes that came.


async def test_announced_3_gib_leave_the_virtual_size_where_it_was() -> None:
    # Untouched pages are not resident, so RSS alone would not show it; but
    # the allocation is committed, and a few such peers exhaust memory under
    # strict overcommit.
    async with ServerProcess.run(max_size=None) as server:
        await round_trip(server)
        before = server.status()
        _, writer = await raw_connect(server.port)
        writer.write(announce(3 * 2**30, b"a few bytes"))
        await writer.drain()
        await round_trip(server)
        after = server.status()
        growth = after["VmSize"] - before["VmSize"]
        peak_growth = after["VmPeak"] - before["VmPeak"]
        assert growth < 32 * 1024, f"VmSize grew by {growth} KiB"
        assert peak_growth < 32 * 1024, f"VmPeak grew by {peak_growth} KiB"
        writer.close()
        await writer.wait_closed()
        log = await server.stop()
    assert not [line for line in log if "Fatal error" in line or "Traceback" in line], log


async def test_frame_that_memory_cannot_hold_fails_with_1009() -> None:
    # 2**62 bytes announced, then bytes until the server's memory, limited to
    # 256 MiB more than it uses, cannot hold the frame's buffer any more.
    async with ServerProcess.run(max_size=None, address_space_headroom=256) as server:
        reader, writer = await raw_connect(server.port)
        writer.write(announce(2**62))

        async def stream() -> None:
            chunk = bytes(MiB)
            with contextlib.suppress(ConnectionError):
                for _ in range(2048):  # 2 GiB at most
                    writer.write(chunk)
                    await writer.drain()

        sending = asyncio.create_task(stream())
        data = await read_to_the_end(reader)
        await sending
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert close_code(data) == 1009
        log = await server.stop()
    assert_quiet(log, "does not fit in memory; failing with close code 1009")
