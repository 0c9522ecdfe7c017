"""What a backend of the hub does: :class:`Backend`, and whom it tells: :class:`BackendListener`."""

from __future__ import annotations

import abc
import dataclasses
from typing import Protocol

from ..envelope import Payload
from ..sequence import Position

__all__ = ["Backend", "BackendListener", "History"]


class BackendListener(Protocol):
    """What a backend calls, in the event loop, as things happen (the hub)."""

    def on_message(self, topic: str, position: Position, payload: Payload) -> None:
        """A message of a subscribed topic arrived; per topic, in the backend's order."""

    def on_resync(self, topic: str, head: Position) -> None:
        """After a reconnection: ``head`` is the topic's latest position.

        Called after every message published before ``head`` was read has gone
        through :meth:`on_message`, so that what was not seen by then is missing.
        """

    def on_state(self, available: bool, error: BaseException | None) -> None:
        """The backend became available, or unavailable because of ``error``."""


@dataclasses.dataclass(frozen=True)
class History:
    """What a backend remembers of a topic after some position.

    Attributes:
        head: The topic's latest position (offset 0 and epoch ``""``: no message
            yet).
        entries: The messages it still holds after the position asked for, up
            to the limit asked for, in order: all of ``head.epoch``.
    """

    head: Position
    entries: list[tuple[Position, Payload]]


class Backend(abc.ABC):
    """Carries messages between the hubs of all processes and numbers them.

    One backend serves one hub. Its methods run in the hub's event loop.
    """

    @property
    @abc.abstractmethod
    def available(self) -> bool:
        """Whether it can publish now."""

    @abc.abstractmethod
    async def start(self, listener: BackendListener) -> None:
        """Connect; from now on, tell ``listener`` what happens."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect and let go of every resource; publishing fails afterwards."""

    @abc.abstractmethod
    async def publish(self, topic: str, payload: Payload, history: int) -> Position:
        """Publish ``payload`` to every process subscribed to ``topic``.

        Args:
            topic: The topic.
            payload: The message.
            history: How many of the topic's latest messages to keep for
                recovery (0: none).

        Returns:
            The message's position.

        Raises:
            BackendUnavailable: If it cannot take the message.
        """

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start receiving ``topic``; return once its messages flow to the listener.

        Before it returns, it calls the listener's ``on_resync`` with the
        topic's latest position, after which messages follow. While the backend
        is unavailable, waits until it is back.
        """

    @abc.abstractmethod
    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (at once for the listener; soon for the backend)."""

    @abc.abstractmethod
    async def head(self, topic: str) -> Position:
        """The topic's latest position.

        Raises:
            BackendUnavailable: If the backend cannot answer now.
        """

    @abc.abstractmethod
    async def history(self, topic: str, after: Position, upto: int | None = None) -> History:
        """What it holds of ``topic`` after ``after``, up to offset ``upto`` (included).

        When ``after`` is of another epoch than the current one, the entries
        start with the oldest held of the current epoch.

        Raises:
            BackendUnavailable: If the backend cannot answer now.
        """

    def stats(self) -> dict[str, float]:
        """Numbers about the backend for metrics (connections, reconnections...)."""
        return {}
