"""The chat's server: static page, WebSocket protocol, rooms as topics of a Redis-backed hub.

Protocol (JSON text frames). The browser sends:

- ``{"type": "join", "room": "lobby", "since": {"epoch": "...", "offset": 12}}``:
  subscribe to a room; ``since`` (optional) is the last position seen, after a
  reconnection, so that the missed messages are replayed from history;
- ``{"type": "leave", "room": "lobby"}``;
- ``{"type": "say", "room": "lobby", "name": "ann", "text": "hello"}``.

The server sends ``{"type": "hello", "worker": <pid>}`` first, then the hub's
frames (``subscribed``, ``message`` whose ``data`` is the JSON of
``{"name", "text"}``, ``gap``: see docs/hub.md), and ``{"type": "error",
"message": ...}`` when a request cannot be carried out.

Configuration, from the environment: ``REDIS_URL`` (default
``redis://localhost:6379/0``), ``CHAT_HISTORY`` (messages kept per room, 100).
"""

from __future__ import annotations

import http
import json
import logging
import os
import pathlib
import re
from typing import Any

import portside
from portside.app import App
from portside.hub import BackendUnavailable, Hub, Position, RedisBackend

STATIC = pathlib.Path(__file__).with_name("static")
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
}
ROOM = re.compile(r"[\w-]{1,40}")
MAX_ROOMS = 10
MAX_TEXT = 2000
MAX_NAME = 40

logger = logging.getLogger("chat")

hub = Hub(
    RedisBackend(
        os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        # A message typed while Redis restarts waits for it, up to 30 s.
        on_outage="queue",
        max_queued=1000,
        queue_timeout=30,
    ),
    history=int(os.environ.get("CHAT_HISTORY", "100")),
)


def static_files(
    connection: portside.ServerConnection, request: portside.Request
) -> portside.Response | None:
    """Serve the page and its script; anything else goes on (WebSocket, probes)."""
    path = request.path.partition("?")[0]
    if path == "/favicon.ico":
        return connection.respond(http.HTTPStatus.NOT_FOUND, "No icon.\n")
    entry = FILES.get(path)
    if entry is None:
        return None
    name, content_type = entry
    body = (STATIC / name).read_bytes()
    headers = portside.Headers(
        {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-cache",
        }
    )
    return portside.Response(http.HTTPStatus.OK, "OK", headers, body)


async def send_error(ws: portside.ServerConnection, message: str) -> None:
    await ws.send(json.dumps({"type": "error", "message": message}))


def room_of(request: dict[str, Any]) -> str:
    room = request.get("room")
    if not isinstance(room, str) or not ROOM.fullmatch(room):
        raise ValueError("a room name has 1 to 40 letters, digits, - or _")
    return room


async def handle(ws: portside.ServerConnection, request: dict[str, Any]) -> None:
    kind = request.get("type")
    if kind == "join":
        room = room_of(request)
        since = request.get("since")
        position = Position.from_json(since) if since is not None else None
        if f"chat:{room}" not in hub.topics(ws) and len(hub.topics(ws)) >= MAX_ROOMS:
            raise ValueError(f"at most {MAX_ROOMS} rooms at a time")
        await hub.subscribe(ws, f"chat:{room}", since=position)
    elif kind == "leave":
        hub.unsubscribe(ws, f"chat:{room_of(request)}")
    elif kind == "say":
        room = room_of(request)
        name, text = request.get("name"), request.get("text")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise ValueError(f"a name has 1 to {MAX_NAME} characters")
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
            raise ValueError(f"a message has 1 to {MAX_TEXT} characters")
        if f"chat:{room}" not in hub.topics(ws):
            raise ValueError(f"join {room} first")
        try:
            await hub.publish(f"chat:{room}", json.dumps({"name": name, "text": text}))
        except BackendUnavailable as exc:
            logger.warning("message not sent: %s", exc)
            await send_error(ws, f"not sent: {exc}")
    else:
        raise ValueError(f"unknown request type {kind!r}")


async def chat(ws: portside.ServerConnection) -> None:
    """One browser: requests in, the hub's frames out."""
    await ws.send(json.dumps({"type": "hello", "worker": os.getpid()}))
    async for raw in ws:
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            await handle(ws, request)
        except ValueError as exc:  # json.JSONDecodeError is one
            await send_error(ws, str(exc))


app = App(chat, process_request=static_files, max_size=2**14)
hub.attach(app)
