#!/usr/bin/env python

import asyncio

from werkzeug.routing import Map, Rule

from portside.asyncio.router import route


async def get_time(websocket):
    await websocket.send("it is time")


async def get_channel(websocket, channel_id):
    await websocket.send(f"channel {channel_id}")


url_map = Map(
    [
        Rule("/time", endpoint=get_time),
        Rule("/channel/<int:channel_id>", endpoint=get_channel),
    ]
)


async def main():
    async with route(url_map, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
