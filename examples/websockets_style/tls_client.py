#!/usr/bin/env python

import asyncio
import pathlib
import ssl

from portside.asyncio.client import connect

ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
localhost_pem = pathlib.Path(__file__).with_name("localhost.pem")
ssl_context.load_verify_locations(localhost_pem)


async def hello():
    uri = "wss://localhost:8765"
    async with connect(uri, ssl=ssl_context) as websocket:
        await websocket.send("TLS")
        greeting = await websocket.recv()
        print(greeting)


if __name__ == "__main__":
    asyncio.run(hello())
