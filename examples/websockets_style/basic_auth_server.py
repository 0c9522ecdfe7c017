#!/usr/bin/env python

import asyncio

from portside.asyncio.server import basic_auth, serve


async def hello(websocket):
    await websocket.send(f"Hello {websocket.username}!")


async def main():
    async with serve(
        hello,
        "localhost",
        8765,
        process_request=basic_auth(
            realm="example",
            credentials=("mary", "p@ssw0rd"),
        ),
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
