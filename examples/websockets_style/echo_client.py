#!/usr/bin/env python

import asyncio

from portside.asyncio.client import connect


async def main():
    async with connect("ws://localhost:8765") as websocket:
        await websocket.send("Hello world!")
        message = await websocket.recv()
        print(message)


if __name__ == "__main__":
    asyncio.run(main())
