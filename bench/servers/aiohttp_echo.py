"""aiohttp echo server: a ``web.WebSocketResponse`` handler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from bench.servers.common import ServerOptions, main


def make_handler(compress: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def echo(request: web.Request) -> web.StreamResponse:
        # autoping stays on (aiohttp's default); max_msg_size=0 lifts the size limit.
        ws = web.WebSocketResponse(compress=compress, max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    return echo


async def serve(options: ServerOptions) -> None:
    app = web.Application()
    app.router.add_get("/", make_handler(options.compression))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, ssl_context=options.ssl_context())
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main(serve, __doc__ or "")
