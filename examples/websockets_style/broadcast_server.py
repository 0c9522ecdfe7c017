#!/usr/bin/env python

import asyncio
import itertools

from portside.asyncio.server import broadcast, serve

CONNECTIONS = set()


async def register(websocket):
    CONNECTIONS.add(websocket)
    try:
        await websocket.wait_closed()
    finally:
        CONNECTIONS.remove(websocket)


async def show_time():
    for tick in itertools.count():
        broadcast(CONNECTIONS, f"tick {tick}")
        await asyncio.sleep(0.1)


async def main():
    async with serve(register, "localhost", 8765):
        await show_time()


if __name__ == "__main__":
    asyncio.run(main())
