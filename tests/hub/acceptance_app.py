"""The application of the hub's acceptance tests, run with ``portside serve``.

``/sub``: the connection gets ``{"type": "worker", "pid": ...}``, then is
subscribed to topic ``t`` (the hub's frames follow). ``/sub/stalled``: the same,
for a subscriber that will stop reading: its backlog is kept small (a 16 KiB
``write_limit`` and an 8 KiB SO_SNDBUF), so that it fills within a burst, while
every other subscriber keeps the default 1 MiB and is not skipped when the
machine is slow to schedule its reader. ``/pub``: the connection
gets the same first frame; then each message it sends is published to ``t``,
and answered with ``{"offset": N}``, or ``{"error": ..., "maybe": bool}`` when
the hub raised (``maybe``: it may have been published all the same).

Configuration from the environment: ``REDIS_URL``, ``HUB_HISTORY`` (default 0),
``HUB_ON_OUTAGE`` (``raise``), ``HUB_RECONNECT_MIN`` (0.1).
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


STALLED_PATH = "/sub/stalled"
STALLED_WRITE_LIMIT = 16384
STALLED_SNDBUF = 8192


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
    if ws.path == STALLED_PATH:
        # The backlog, the kernel's share and the transport's, small: it fills fast.
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STALLED_SNDBUF)
        ws.write_limit = STALLED_WRITE_LIMIT
        ws.transport.set_write_buffer_limits(STALLED_WRITE_LIMIT, STALLED_WRITE_LIMIT // 4)
    await hub.subscribe(ws, "t")
    await ws.wait_closed()


app = App(handler, write_limit=2**20)
hub.attach(app)
