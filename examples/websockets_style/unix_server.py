#!/usr/bin/env python

import asyncio
import os.path

from portside.asyncio.server import unix_serve


async def hello(websocket):
    name = await websocket.recv()
    greeting = f"Hello {name}!"
    await websocket.send(greeting)


async def main():
    socket_path = os.path.join(os.path.dirname(__file__), "socket")
    async with unix_serve(hello, socket_path) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
