"""Ping-pong load from a library's own async client: portside's or websockets'.

Each connection runs ``await ws.send(message); await ws.recv()`` in a loop, on
uvloop. Used for the portside->portside rows and for the permessage-deflate row,
which picows' client cannot drive. Prints ``{"count", "seconds", "rate"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bench.clients.common import emit, insecure_ssl_context, measure
from bench.payloads import binary_payload, json_text_payload
from bench.runtime import run_on_loop

CLOSE_TIMEOUT = 30.0

Message = bytes | str


class Client(Protocol):
    """What both libraries' client connections offer."""

    async def send(self, message: Message) -> None: ...

    async def recv(self) -> Message: ...

    async def close(self) -> None: ...


Connect = Callable[[str, bool], Awaitable[Client]]


async def portside_connect(url: str, compression: bool) -> Client:
    import portside

    options: dict[str, Any] = {"ssl": insecure_ssl_context()} if url.startswith("wss:") else {}
    return await portside.connect(
        url,
        compression="deflate" if compression else None,
        ping_interval=None,
        max_size=None,
        **options,
    )


async def websockets_connect(url: str, compression: bool) -> Client:
    from websockets.asyncio.client import connect

    options: dict[str, Any] = {"ssl": insecure_ssl_context()} if url.startswith("wss:") else {}
    connection: Client = await connect(
        url,
        compression="deflate" if compression else None,
        ping_interval=None,
        max_size=None,
        **options,
    )
    return connection


CONNECTORS: dict[str, Connect] = {"portside": portside_connect, "websockets": websockets_connect}


class Load:
    """State shared by every connection of the client."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.stopping = False


async def ping_pong(ws: Client, message: Message, load: Load) -> None:
    await ws.send(message)
    if await ws.recv() != message:
        raise AssertionError("the echo differs from the message sent")
    load.round_trips += 1
    size = len(message)
    while not load.stopping:
        await ws.send(message)
        if len(await ws.recv()) != size:
            raise AssertionError("the echo has the wrong length")
        load.round_trips += 1


async def run(args: argparse.Namespace) -> int:
    connect = CONNECTORS[args.library]
    if args.library == "portside":
        import portside

        # What portside.run() does before it starts the loop.
        portside.tune_allocator()
    message: Message = (
        json_text_payload(args.size) if args.payload == "json" else binary_payload(args.size)
    )
    load = Load()
    clients = await asyncio.gather(
        *(connect(args.url, args.compression) for _ in range(args.connections))
    )
    tasks = [asyncio.ensure_future(ping_pong(ws, message, load)) for ws in clients]
    window = await measure(lambda: load.round_trips, args.warmup, args.duration)
    load.stopping = True
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), CLOSE_TIMEOUT)
    await asyncio.wait_for(
        asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True), CLOSE_TIMEOUT
    )
    failed = [task for task in tasks if task.exception() is not None]
    if failed:
        exc = failed[0].exception()
        print(
            f"{args.library} client: {len(failed)} connections failed, first: {exc!r}",
            file=sys.stderr,
        )
        return 1
    emit({**window.as_dict(), "connections": args.connections})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", choices=sorted(CONNECTORS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--size", type=int, required=True, help="message size in bytes")
    parser.add_argument("--payload", choices=("binary", "json"), default="binary")
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    return run_on_loop(run(args), "uvloop")


if __name__ == "__main__":
    raise SystemExit(main())
