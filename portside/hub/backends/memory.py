"""The in-memory backend: one process, no network; the default of :class:`~portside.Hub`."""

from __future__ import annotations

import collections
import secrets
from collections.abc import Iterable

from ..envelope import Payload
from ..errors import HubClosed
from ..sequence import Position
from .base import Backend, BackendListener, History

__all__ = ["MemoryBackend"]


class _Topic:
    __slots__ = ("history", "offset")

    def __init__(self) -> None:
        self.offset = 0
        self.history: collections.deque[tuple[int, Payload]] | None = None


class MemoryBackend(Backend):
    """Messages stay in this process: its hub delivers them to its own subscribers.

    Offsets count from 1 per topic; the epoch is drawn at random when the
    backend is created, so a restarted process starts a new one. With
    ``history=N``, the last N messages of the topic are kept in memory.
    """

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self._topics: dict[str, _Topic] = {}
        self._listener: BackendListener | None = None
        self._subscribed: set[str] = set()
        self._closed = False

    @property
    def available(self) -> bool:  # noqa: D102
        return not self._closed

    async def start(self, listener: BackendListener) -> None:  # noqa: D102
        self._listener = listener
        listener.on_state(True, None)

    async def close(self) -> None:  # noqa: D102
        self._closed = True
        self._listener = None
        self._subscribed.clear()

    async def publish(self, topic: str, payload: Payload, history: int) -> Position:  # noqa: D102
        if self._closed:
            raise HubClosed("the hub is closed")
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        state.offset += 1
        if history > 0:
            kept = state.history
            if kept is None or kept.maxlen != history:
                kept = state.history = collections.deque(kept or (), maxlen=history)
            kept.append((state.offset, payload))
        elif state.history is not None:
            state.history = None
        position = Position(self.epoch, state.offset)
        listener = self._listener
        if listener is not None and topic in self._subscribed:
            listener.on_message(topic, position, payload)
        return position

    async def subscribe(self, topic: str) -> None:  # noqa: D102
        if self._closed:
            raise HubClosed("the hub is closed")
        self._subscribed.add(topic)
        if self._listener is not None:
            self._listener.on_resync(topic, await self.head(topic))

    def unsubscribe(self, topic: str) -> None:  # noqa: D102
        # The topic's offset stays (it must never go back), with its history.
        self._subscribed.discard(topic)

    async def head(self, topic: str) -> Position:  # noqa: D102
        state = self._topics.get(topic)
        return Position(self.epoch, 0 if state is None else state.offset)

    async def history(  # noqa: D102
        self, topic: str, after: Position, upto: int | None = None
    ) -> History:
        state = self._topics.get(topic)
        head = Position(self.epoch, 0 if state is None else state.offset)
        if state is None or state.history is None:
            return History(head, [])
        start = after.offset if after.epoch == self.epoch else 0
        entries: Iterable[tuple[int, Payload]] = state.history
        return History(
            head,
            [
                (Position(self.epoch, offset), payload)
                for offset, payload in entries
                if offset > start and (upto is None or offset <= upto)
            ],
        )
