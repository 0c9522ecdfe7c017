#!/usr/bin/env python

import asyncio

from portside.asyncio.client import connect


async def hello():
    uri = "ws://mary:p%40ssw0rd@localhost:8765"
    async with connect(uri) as websocket:
        greeting = await websocket.recv()
        print(greeting)


if __name__ == "__main__":
    asyncio.run(hello())
