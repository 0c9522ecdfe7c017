"""A fan-out server: ``python -m bench.fanout.server --kind KIND --port PORT [--redis URL]``.

Subscribers connect to ``/sub`` (socket.io: its own path); with the in-memory
kinds the publisher connects to ``/pub`` and every message it sends is published
(portside) or broadcast (websockets) to the subscribers. Prints ``ready``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bench.fanout.common import TOPIC, family
from bench.runtime import raise_nofile_limit, run_on_loop


async def portside_server(port: int, redis: str | None) -> None:
    import portside
    from portside.hub import Hub, RedisBackend

    portside.tune_allocator()
    hub = Hub(RedisBackend(redis) if redis else None)
    await hub.start()

    async def handler(ws: portside.ServerConnection) -> None:
        if ws.path == "/pub":
            async for message in ws:
                await hub.publish(TOPIC, message)
            return
        await hub.subscribe(ws, TOPIC)
        await ws.wait_closed()

    options: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": None}
    async with portside.serve(handler, "127.0.0.1", port, backlog=4096, **options):
        print("ready", flush=True)
        await asyncio.Future()


async def websockets_server(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    subscribers: set[Any] = set()

    async def handler(ws: Any) -> None:
        if ws.request.path == "/pub":
            async for message in ws:
                broadcast(subscribers, message)
            return
        subscribers.add(ws)
        try:
            await ws.send("subscribed")
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    options: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": None}
    async with serve(handler, "127.0.0.1", port, backlog=4096, **options):
        print("ready", flush=True)
        await asyncio.Future()


async def socketio_server(port: int, redis: str) -> None:
    import socketio
    from aiohttp import web

    # Pings every 25 s would need answers from every client: off for the run.
    server = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis),
        ping_interval=3600,
        ping_timeout=3600,
        transports=["websocket"],
    )

    @server.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: Any) -> None:
        await server.enter_room(sid, TOPIC)

    application = web.Application()
    server.attach(application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print("ready", flush=True)
    await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis")
    parser.add_argument("--loop", default="uvloop")
    args = parser.parse_args()
    raise_nofile_limit()
    kind = family(args.kind)
    if kind == "portside-memory":
        coro = portside_server(args.port, None)
    elif kind == "portside-redis":
        coro = portside_server(args.port, args.redis)
    elif kind == "websockets":
        coro = websockets_server(args.port)
    elif kind == "socketio-redis":
        coro = socketio_server(args.port, args.redis)
    else:
        sys.exit(f"unknown kind {args.kind}")
    run_on_loop(coro, args.loop)


if __name__ == "__main__":
    main()
