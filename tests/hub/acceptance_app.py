"""The application of the hub's acceptance tests, run with ``portside serve``.

``/sub``: the connection gets ``{"type": "worker", "pid": ...}``, then is
subscribed to topic ``t`` (the hub's frames follow). ``/pub``: the connection
gets the same first frame; then each message it sends is published to ``t``,
and answered with ``{"offset": N}``, or ``{"error": ..., "maybe": bool}`` when
the hub raised (``maybe``: it may have been published all the same).

Configuration from the environment: ``REDIS_URL``, ``HUB_HISTORY`` (default 0),
``HUB_ON_OUTAGE`` (``raise``), ``HUB_RECONNECT_MIN`` (0.1), ``HUB_WRITE_LIMIT`` (1 MiB),
``HUB_SNDBUF`` (the subscribers' SO_SNDBUF; 0, the default: the kernel's).
"""

from __future__ import annotations

import json
import os
import socket

import portside
from portside.app import App
from portside.hub import BackendUnavailable, Hub, RedisBackend

hub = Hub(
    RedisBackend(
        os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        on_outage="queue" if os.environ.get("HUB_ON_OUTAGE") == "queue" else "raise",
        reconnect_min=float(os.environ.get("HUB_RECONNECT_MIN", "0.1")),
        reconnect_max=max(2.0, float(os.environ.get("HUB_RECONNECT_MIN", "0.1"))),
    ),
    history=int(os.environ.get("HUB_HISTORY", "0")),
)


SNDBUF = int(os.environ.get("HUB_SNDBUF", "0"))


async def handler(ws: portside.ServerConnection) -> None:
    await ws.send(json.dumps({"type": "worker", "pid": os.getpid()}))
    if ws.path == "/pub":
        async for message in ws:
            try:
                position = await hub.publish("t", message)
            except BackendUnavailable as exc:
                reply = {"error": str(exc), "maybe": "may or may not" in str(exc)}
            else:
                reply = {"offset": position.offset}
            await ws.send(json.dumps(reply))
        return
    if SNDBUF:
        # The kernel's share of the backlog, small: a stalled client fills it fast.
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    await hub.subscribe(ws, "t")
    await ws.wait_closed()


app = App(handler, write_limit=int(os.environ.get("HUB_WRITE_LIMIT", str(2**20))))
hub.attach(app)
