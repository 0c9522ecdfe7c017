"""Nothing leaks: references, memory blocks, traced allocations, RSS.

Each scenario is one unit of work that a server repeats all day: an echo of a
mix of messages, a connection opened and closed, one aborted, a recv()
cancelled, a peer that breaks the protocol, a handshake refused, and the same
bytes through the sans-I/O reader. It runs a few times to warm caches up, then
many times between two measurements, which must not grow with the count:

- ``sys.gettotalrefcount()``, on a debug build of CPython only (Debian's
  ``python3-dbg``; ``make leaks`` runs this file there, C and pure Python):
  a reference leaked per round shows as one per round;
- ``sys.getallocatedblocks()``, on any build: a Python object leaked per round
  shows as a block per round;
- tracemalloc, on any build: what the rounds allocated and did not free,
  counted for the lines of portside that allocated it;
- RSS, for what the C code allocates outside Python's allocators.

The bounds leave room for caches that fill up once (the warm-up takes most of
it) and for the interpreter's own noise, and stay far below one leak per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import os
import pathlib
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

import portside
from portside.protocol import SERVER, Protocol
from tests.asyncio.helpers import RawClient, url
from tests.framing import client_frame
from tests.sanitizer import SANITIZER

TEXT, BINARY, CONT, PING = 1, 2, 0, 9

#: Set by ``make leaks``: the reference counts must be checked (a debug build).
LEAK_CHECK = os.environ.get("PORTSIDE_LEAK_CHECK", "") not in ("", "0")

PORTSIDE_DIR = str(pathlib.Path(portside.__file__).parent)

Scenario = Callable[[], Awaitable[None]]


def rss() -> int:
    """Resident set size, in bytes."""
    pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


#: Rounds per measuring window: more with ``make leaks``.
ROUNDS = int(os.environ.get("PORTSIDE_LEAK_ROUNDS", "40"))
WINDOWS = 3


@dataclass
class Growth:
    """What each window of ``rounds`` rounds of a scenario left behind."""

    rounds: int
    refs: list[int] | None  # None: not a debug build
    blocks: list[int]
    traced: int  # bytes allocated by portside's lines, still held after all windows
    rss: int  # RSS growth over all windows

    def check(self, *, rss_bound: int = 4 << 20) -> None:
        # A leak of one object or reference per round shows in every window, as
        # `rounds` at least; what fills up once, or comes and goes (asyncio's
        # cancelled timers, freed when it sweeps them), does not.
        bound = max(self.rounds // 4, 10)
        if self.refs is not None:
            assert min(self.refs) < bound, (
                f"references leaked in each window of {self.rounds} rounds: {self.refs}"
            )
        assert min(self.blocks) < bound, (
            f"memory blocks leaked in each window of {self.rounds} rounds: {self.blocks}"
        )
        total = WINDOWS * self.rounds
        assert self.traced < 64 * total + 100_000, (
            f"{self.traced} bytes allocated by portside and still held after {total} rounds"
        )
        if not SANITIZER:  # ASan holds freed memory in quarantine, 256 MiB of it
            assert self.rss < rss_bound, f"RSS grew by {self.rss} bytes in {total} rounds"


def totalrefcount() -> int:
    counter: Callable[[], int] | None = getattr(sys, "gettotalrefcount", None)
    return 0 if counter is None else counter()


def sweep_cancelled_timers() -> None:
    """Drop the cancelled timers that asyncio's loop still holds.

    It keeps them in its heap until they are due or half the heap: a few
    hundred at times, which come and go with no leak (uvloop frees them at once).
    """
    loop = asyncio.get_running_loop()
    scheduled = getattr(loop, "_scheduled", None)
    if isinstance(scheduled, list) and hasattr(loop, "_timer_cancelled_count"):
        scheduled[:] = [handle for handle in scheduled if not handle.cancelled()]
        heapq.heapify(scheduled)
        loop._timer_cancelled_count = 0


async def settle() -> None:
    """Let callbacks scheduled by the last round run, then collect garbage."""
    for _ in range(5):
        await asyncio.sleep(0)
    sweep_cancelled_timers()
    gc.collect()


@contextlib.contextmanager
def logs_dropped() -> Iterator[None]:
    """Logging runs as usual, but no record is kept (pytest keeps them all)."""
    logger = logging.getLogger("portside")
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


async def measure(scenario: Scenario, rounds: int = ROUNDS, warmup: int = 10) -> Growth:
    """Run ``scenario`` ``warmup`` times, then ``WINDOWS`` times ``rounds`` times."""
    with logs_dropped():
        tracemalloc.start()
        try:
            return await _measure(scenario, rounds, warmup)
        finally:
            tracemalloc.stop()


async def _measure(scenario: Scenario, rounds: int, warmup: int) -> Growth:
    # Traced from the warm-up on: what it allocated and what the last round
    # holds in its place (the last message a handler read...) cancel out.
    for _ in range(warmup):
        await scenario()
    await settle()
    start = tracemalloc.take_snapshot()
    resident = rss()
    refs: list[int] = []
    blocks: list[int] = []
    for _ in range(WINDOWS):
        await settle()
        refs_before, blocks_before = totalrefcount(), sys.getallocatedblocks()
        for _ in range(rounds):
            await scenario()
        await settle()
        refs.append(totalrefcount() - refs_before)
        blocks.append(sys.getallocatedblocks() - blocks_before)
    resident = rss() - resident
    end = tracemalloc.take_snapshot()
    only_portside = [tracemalloc.Filter(True, PORTSIDE_DIR + os.sep + "*")]
    stats = end.filter_traces(only_portside).compare_to(
        start.filter_traces(only_portside), "lineno"
    )
    traced = sum(stat.size_diff for stat in stats)
    if os.environ.get("PORTSIDE_LEAK_DEBUG"):
        print(f"\n{scenario.__qualname__}: refs {refs}, blocks {blocks}, traced {traced}")
        for stat in stats[:5]:
            print("   ", stat)
    return Growth(
        rounds=rounds,
        refs=refs if hasattr(sys, "gettotalrefcount") else None,
        blocks=blocks,
        traced=traced,
        rss=resident,
    )


def test_reference_counts_are_checked_where_asked() -> None:
    # `make leaks` sets PORTSIDE_LEAK_CHECK: on a build without
    # sys.gettotalrefcount the reference checks would silently not happen.
    if LEAK_CHECK:
        assert hasattr(sys, "gettotalrefcount"), "PORTSIDE_LEAK_CHECK needs a debug build"
    else:
        pytest.skip("reference counts are checked by make leaks, on python3-dbg")


# The server every scenario talks to.


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def fail(ws: portside.ServerConnection) -> None:
    raise RuntimeError("the handler failed on purpose")


@contextlib.asynccontextmanager
async def server(
    handler: Callable[..., Awaitable[None]] = echo, **kwargs: object
) -> AsyncIterator[portside.Server]:
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("close_timeout", 1)
    async with portside.serve(handler, "127.0.0.1", 0, **kwargs) as running:  # type: ignore[arg-type]
        yield running


async def until_no_connection(running: portside.Server) -> None:
    """Wait until the server let go of every connection."""
    while running.connections:
        await asyncio.sleep(0.001)


# Scenarios.

MESSAGES: list[portside.Data] = [
    "short text",
    b"\x00" * 125,
    "é☕" * 2000,  # text cut over reads, validated as it arrives
    bytes(range(256)) * 400,  # 100 KiB: larger than read_limit, its own buffer
    bytes(70_000),
]


async def test_echo_does_not_leak() -> None:
    async with server(compression=None) as running, portside.connect(url(running)) as ws:

        async def round_trip() -> None:
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag", "ment", "ed"])
            assert await ws.recv() == "fragmented"
            await (await ws.ping())

        growth = await measure(round_trip)
    growth.check()


async def test_compressed_echo_does_not_leak() -> None:
    async with server() as running, portside.connect(url(running)) as ws:

        async def round_trip() -> None:
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message

        growth = await measure(round_trip)
    growth.check(rss_bound=8 << 20)


async def test_open_and_close_do_not_leak() -> None:
    async with server() as running:

        async def open_and_close() -> None:
            async with portside.connect(url(running)) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
            await until_no_connection(running)

        growth = await measure(open_and_close)
    growth.check()


async def test_abort_does_not_leak() -> None:
    async with server() as running:

        async def abort() -> None:
            raw = await RawClient.connect(running)
            # Half a frame, then a TCP reset.
            raw.send(client_frame(BINARY, bytes(1000))[:500])
            raw.transport.abort()
            await until_no_connection(running)

        growth = await measure(abort)
    growth.check()


async def test_cancellation_does_not_leak() -> None:
    async with server() as running, portside.connect(url(running)) as ws:

        async def cancel() -> None:
            # A recv() cancelled while it waits: the next one gets the message.
            waiting = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await ws.send("kept")
            assert await ws.recv() == "kept"
            # wait_for() timing out, then a message for the next recv().
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.0001)
            await ws.send("next")
            assert await ws.recv() == "next"
            # A send() cancelled before it could run.
            sending = asyncio.ensure_future(ws.send("never"))
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending

        growth = await measure(cancel)
    growth.check()


# Each of these makes the server fail the connection, or refuse the handshake.
BAD_INPUT = [
    client_frame(TEXT, b"x", rsv=2),  # 1002
    client_frame(TEXT, b"\xce\xba\xff"),  # 1007
    client_frame(BINARY, b"x", length=2**62)[:14],  # 1009
    client_frame(TEXT, b"ab", fin=False) + client_frame(BINARY, b"c"),  # 1002
    client_frame(PING, bytes(126)),  # 1002
]


async def test_protocol_errors_do_not_leak() -> None:
    async with server(max_size=2**16) as running:

        async def protocol_errors() -> None:
            for data in BAD_INPUT:
                raw = await RawClient.connect(running)
                raw.send(data)
                await raw.read_until_closed()
                await raw.close()
            await until_no_connection(running)

        growth = await measure(protocol_errors)
    growth.check()


async def test_handler_errors_and_bad_handshakes_do_not_leak() -> None:
    async with server(fail) as running:

        async def errors() -> None:
            with contextlib.suppress(portside.ConnectionClosedError):
                async with portside.connect(url(running)) as ws:
                    await ws.recv()
            raw = await RawClient.connect(running, handshake=False)
            raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not a WebSocket handshake
            assert (await raw.reader.read()).startswith(b"HTTP/1.1 4")
            await raw.close()
            await until_no_connection(running)

        growth = await measure(errors)
    growth.check()


async def test_reader_does_not_leak() -> None:
    data = b"".join(
        client_frame(
            TEXT if isinstance(m, str) else BINARY, m.encode() if isinstance(m, str) else m
        )
        for m in MESSAGES
    )

    async def read() -> None:
        protocol = Protocol(SERVER, max_size=2**20)
        for start in range(0, len(data), 7_000):
            protocol.receive_data(data[start : start + 7_000])
        for bad in BAD_INPUT:
            Protocol(SERVER, max_size=2**16).receive_data(bad)

    growth = await measure(read)
    growth.check()
