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
One cache that no warm-up fills, CPython 3.10's opcache, is counted exactly
and left out (see ``OPCACHE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import heapq
import logging
import os
import pathlib
import sys
import tracemalloc
import types
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


#: CPython 3.10 gives a code object its opcache (its LOAD_GLOBAL and LOAD_ATTR
#: caches) the 1024th time the code runs (OPCACHE_MIN_RUNS in Python/ceval.c; a
#: coroutine runs each time it resumes) and keeps it for good: two blocks per
#: code object, once. A function that a round runs k times gets them at round
#: 1024 / k, so whatever the warm-up, some functions get theirs in a measured
#: window: test_protocol_errors_do_not_leak saw 104 code objects get theirs
#: (208 blocks) around its 1024th connection, and every window had some. Each
#: window reads, off the code objects themselves, how many opcache blocks it
#: gained, and does not count them. CPython 3.11 caches inside the bytecode,
#: allocated with the code object: nothing to count there.
OPCACHE = sys.version_info[:2] == (3, 10) and sys.implementation.name == "cpython"

#: The largest block that pymalloc serves, hence that sys.getallocatedblocks() counts.
PYMALLOC_MAX = 512


class CodeObject310(ctypes.Structure):
    """CPython 3.10's PyCodeObject (Include/cpython/code.h), up to its opcache."""

    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", ctypes.c_void_p),
        *(
            (name, ctypes.c_int)
            for name in (
                "co_argcount",
                "co_posonlyargcount",
                "co_kwonlyargcount",
                "co_nlocals",
                "co_stacksize",
                "co_flags",
                "co_firstlineno",
            )
        ),
        *(
            (name, ctypes.c_void_p)
            for name in (
                "co_code",
                "co_consts",
                "co_names",
                "co_varnames",
                "co_freevars",
                "co_cellvars",
                "co_cell2arg",
                "co_filename",
                "co_name",
                "co_linetable",
                "co_zombieframe",
                "co_weakreflist",
                "co_extra",
                "co_opcache_map",  # a byte per code unit
                "co_opcache",  # a 32-byte _PyOpcache per cached instruction
            )
        ),
        ("co_opcache_flag", ctypes.c_int),  # runs so far, up to OPCACHE_MIN_RUNS
        ("co_opcache_size", ctypes.c_ubyte),  # cached instructions
    ]


@functools.cache
def code_objects() -> tuple[types.CodeType, ...]:
    """Every code object that the program's functions can run, nested ones too."""
    todo = [o.__code__ for o in gc.get_objects() if isinstance(o, types.FunctionType)]
    found: dict[int, types.CodeType] = {}
    while todo:
        code = todo.pop()
        if id(code) not in found:
            found[id(code)] = code
            todo.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return tuple(found.values())


def opcache_pending() -> list[types.CodeType]:
    """The code objects that have run and have no opcache yet: those that may get one next.

    One that has not run yet and runs 1024 times in the measured rounds (none
    does) would be taken for a leak: the safe side.
    """
    pending = []
    for code in code_objects():
        raw = CodeObject310.from_address(id(code))
        assert (raw.co_firstlineno, raw.co_flags) == (code.co_firstlineno, code.co_flags), (
            "not the layout of CPython 3.10's PyCodeObject"
        )
        if raw.co_opcache_flag and not raw.co_opcache_map:
            pending.append(code)
    return pending


def opcache_blocks(codes: list[types.CodeType]) -> int:
    """How many of the blocks sys.getallocatedblocks() counts are these code objects' opcaches."""
    blocks = 0
    for code in codes:
        raw = CodeObject310.from_address(id(code))
        if raw.co_opcache_map:
            blocks += len(code.co_code) // 2 <= PYMALLOC_MAX
            blocks += 32 * raw.co_opcache_size <= PYMALLOC_MAX
    return blocks


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
    codes = opcache_pending() if OPCACHE else []
    resident = rss()
    refs: list[int] = []
    blocks: list[int] = []
    for _ in range(WINDOWS):
        await settle()
        opcache_before = opcache_blocks(codes)
        refs_before, blocks_before = totalrefcount(), sys.getallocatedblocks()
        for _ in range(rounds):
            await scenario()
        await settle()
        refs.append(totalrefcount() - refs_before)
        blocks.append(sys.getallocatedblocks() - blocks_before)
        blocks[-1] -= opcache_blocks(codes) - opcache_before
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
