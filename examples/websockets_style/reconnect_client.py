#!/usr/bin/env python

import asyncio

from portside.asyncio.client import connect
from portside.exceptions import ConnectionClosed


async def main():
    async for websocket in connect("ws://localhost:8765"):
        try:
            async for message in websocket:
                print(message, flush=True)
        except ConnectionClosed:
            continue


if __name__ == "__main__":
    asyncio.run(main())
