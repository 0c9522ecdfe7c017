#!/usr/bin/env python

import asyncio
import os

from portside.asyncio.server import serve


async def whoami(websocket):
    await websocket.send(f"served by process {os.getpid()}")


async def main():
    # Start this program several times: the processes share the port.
    async with serve(whoami, "localhost", 8765, reuse_port=True) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
