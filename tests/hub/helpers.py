"""Helpers for the hub's tests: servers whose connections subscribe, and clients."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import portside
from portside.hub import Hub, MemoryBackend, Position
from tests.asyncio.helpers import running, url


def subscribing_handler(hub: Hub) -> Any:
    """Subscribe each connection to the topic in its path (``/topic?since=epoch:offset``)."""

    async def handler(ws: portside.ServerConnection) -> None:
        parsed = urllib.parse.urlsplit(ws.path)
        topic = urllib.parse.unquote(parsed.path[1:])
        query = urllib.parse.parse_qs(parsed.query)
        since = None
        if "since" in query:
            epoch, _, offset = query["since"][0].partition(":")
            since = Position(epoch, int(offset))
        if topic:
            await hub.subscribe(ws, topic, since=since)
        async for message in ws:
            # Each message received is published to the topic.
            await hub.publish(topic, message)

    return handler


@asynccontextmanager
async def hub_server(hub: Hub, **kwargs: Any) -> AsyncIterator[portside.Server]:
    async with running(subscribing_handler(hub), **kwargs) as server:
        yield server


async def subscriber(
    server: portside.Server, topic: str, since: Position | None = None, **kwargs: Any
) -> tuple[portside.ClientConnection, dict[str, Any]]:
    """A client subscribed to ``topic``, and the ``subscribed`` frame it got."""
    path = "/" + urllib.parse.quote(topic)
    if since is not None:
        path += f"?since={since.epoch}:{since.offset}"
    client = await portside.connect(url(server, path), **kwargs)
    frames = []
    while True:
        frame = json.loads(await client.recv())
        frames.append(frame)
        if frame["type"] == "subscribed":
            break
    return client, {"subscribed": frame, "before": frames[:-1]}


async def receive_json(client: portside.ClientConnection, timeout: float = 5) -> Any:
    return json.loads(await asyncio.wait_for(client.recv(), timeout))


class LossyBackend(MemoryBackend):
    """A memory backend that loses the next ``drop`` messages on their way to the hub."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = 0

    async def publish(self, topic: str, payload: Any, history: int) -> Position:
        if self.drop:
            self.drop -= 1
            listener, self._listener = self._listener, None
            try:
                return await super().publish(topic, payload, history)
            finally:
                self._listener = listener
        return await super().publish(topic, payload, history)
