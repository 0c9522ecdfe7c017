#!/usr/bin/env python

import asyncio
import os.path

from portside.asyncio.client import unix_connect


async def hello():
    socket_path = os.path.join(os.path.dirname(__file__), "socket")
    async with unix_connect(socket_path) as websocket:
        await websocket.send("Unix")
        greeting = await websocket.recv()
        print(greeting)


if __name__ == "__main__":
    asyncio.run(hello())
