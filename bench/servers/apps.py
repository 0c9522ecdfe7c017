"""Echo applications for the application-server rows: portside's handler, an ASGI app.

``portside serve bench.servers.apps:portside_echo`` serves the first;
``uvicorn bench.servers.apps:asgi_echo`` and ``granian --interface asgi
bench.servers.apps:asgi_echo`` the second. Both answer every WebSocket message
with the same message, and ``GET /healthz`` (the ASGI app itself, portside by
its built-in endpoint) for the harness's readiness probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import portside

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def portside_echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def asgi_echo(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"OK\n"})
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})
