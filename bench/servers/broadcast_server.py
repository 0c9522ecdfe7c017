"""A broadcasting server for bench.broadcast: portside's or websockets' broadcast().

It accepts ``--connections`` connections, prints ``ready``, waits for ``go`` on
stdin, then calls ``broadcast(connections, message)`` ``--messages`` times, one
call per turn of the event loop (``await asyncio.sleep(0)`` in between), and
prints one JSON line: the monotonic time it started, its CPU time (user and
system, from getrusage) and wall time over the broadcasts, and, for portside,
the messages its slow-consumer policy skipped. It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(args: argparse.Namespace) -> None:
    if args.lib == "portside":
        import portside
        from portside.asyncio.server import broadcast, serve

        portside.tune_allocator()  # as portside.run() does
        policy: Any = portside.asyncio.broadcasting.DEFAULT_POLICY
    else:
        from websockets.asyncio.server import broadcast, serve  # type: ignore[assignment]

        policy = None
    connections: set[Any] = set()
    everyone = asyncio.Event()

    async def handler(websocket: Any) -> None:
        connections.add(websocket)
        if len(connections) == args.connections:
            everyone.set()
        try:
            await websocket.wait_closed()
        finally:
            connections.discard(websocket)

    loop = asyncio.get_running_loop()
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        compression=None,
        ping_interval=None,
        max_size=None,
        backlog=4096,
    ):
        print("listening", flush=True)
        await everyone.wait()
        print("ready", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        assert line.strip() == "go", line
        message = "x" * args.size
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        for _ in range(args.messages):
            broadcast(connections, message)
            await asyncio.sleep(0)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result = {
            "start": start,
            "wall": wall,
            "cpu": cpu,
            "user": after.ru_utime - before.ru_utime,
            "system": after.ru_stime - before.ru_stime,
            "connections": len(connections),
            "skipped": None if policy is None else policy.skipped,
        }
        print(json.dumps(result), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the harness is done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", choices=["portside", "websockets"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    raise_fd_limit()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
