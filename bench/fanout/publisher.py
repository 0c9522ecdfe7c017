"""The publisher: ``python -m bench.fanout.publisher --kind KIND --port PORT --phase P``.

Reads commands on stdin, one per line: ``throughput M`` publishes M messages as
fast as each publish returns, then the end marker; ``latency K RATE`` publishes K
messages at RATE per second, then the end marker. Prints ``{"start_ns": ...}``
when it starts a phase, and ``ready`` once connected.

In-memory kinds: through a WebSocket to the server's ``/pub``, which publishes
(or broadcasts) each message. Redis kinds: with the library's own publisher,
through Redis: portside's ``Hub(RedisBackend)``, python-socketio's write-only
``AsyncRedisManager``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.fanout.common import END_LATENCY, END_THROUGHPUT, TOPIC, family, payload
from bench.runtime import run_on_loop


async def publisher(
    kind: str, port: int, redis: str | None
) -> tuple[Callable[[str], Awaitable[Any]], Any]:
    if kind in ("portside-memory", "websockets"):
        import portside

        client = await portside.connect(
            f"ws://127.0.0.1:{port}/pub", compression=None, ping_interval=None, max_size=None
        )
        return client.send, client.close
    if kind == "portside-redis":
        from portside.hub import Hub, RedisBackend

        hub = Hub(RedisBackend(redis))
        await hub.start()
        return (lambda message: hub.publish(TOPIC, message)), hub.close
    if kind == "socketio-redis":
        import socketio

        manager = socketio.AsyncRedisManager(redis, write_only=True)
        return (lambda message: manager.emit("m", message, room=TOPIC, namespace="/")), None
    raise ValueError(kind)


async def main(kind: str, port: int, redis: str | None) -> None:
    send, close = await publisher(kind, port, redis)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "throughput":
            print(json.dumps({"start_ns": time.monotonic_ns()}), flush=True)
            for seq in range(int(line[1])):
                await send(payload("T", seq))
            await send(END_THROUGHPUT)
        elif line[0] == "latency":
            count, rate = int(line[1]), float(line[2])
            print(json.dumps({"start_ns": time.monotonic_ns()}), flush=True)
            start = time.monotonic()
            for seq in range(count):
                delay = start + seq / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await send(payload("L", seq))
            await send(END_LATENCY)
        print(json.dumps({"sent": line[0]}), flush=True)
    if close is not None:
        await close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis")
    parser.add_argument("--loop", default="uvloop")
    args = parser.parse_args()
    run_on_loop(main(family(args.kind), args.port, args.redis), args.loop)
