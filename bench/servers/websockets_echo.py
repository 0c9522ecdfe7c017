"""websockets echo server on its new asyncio API, set up as its docs advise for benchmarks."""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from bench.servers.common import ServerOptions, main


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def serve(options: ServerOptions) -> None:
    async with ws_serve(echo, options.host, options.port, **options.serve_options()) as server:
        await server.serve_forever()


if __name__ == "__main__":
    main(serve, __doc__ or "")
