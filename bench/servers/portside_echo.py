"""portside echo server, written with portside's ordinary async API."""

from __future__ import annotations

import portside
from bench.servers.common import ServerOptions, main


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def serve(options: ServerOptions) -> None:
    # What portside.run() does before it starts the loop; the harness picks the
    # loop itself, so it cannot call portside.run().
    portside.tune_allocator()
    async with portside.serve(
        echo, options.host, options.port, **options.serve_options()
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    main(serve, __doc__ or "")
