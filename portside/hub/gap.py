"""What a subscriber is told when messages will not come: :class:`Gap`."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from .sequence import Missing

__all__ = ["Gap", "GapReason"]

GapReason = Literal["slow", "backend", "history"]
"""Why messages are missing.

``slow``: the connection's backlog was full, so the hub skipped them for it.
``backend``: this process lost them between the backend and itself (the Redis
connection broke, or Redis restarted), and history could not give them back.
``history``: a subscription with ``since`` asked for messages that history no
longer holds, or the topic keeps no history.
"""


@dataclasses.dataclass(frozen=True)
class Gap:
    """Messages of ``topic`` that one or all subscribers of this process will not get.

    Attributes:
        topic: The topic.
        missing: The missing offsets and their epoch.
        reason: Why they are missing: see :data:`GapReason`.
        connection: The subscriber concerned, or ``None`` for every subscriber
            of ``topic`` in this process.
    """

    topic: str
    missing: Missing
    reason: GapReason
    connection: Any = None

    @property
    def count(self) -> int:
        """How many messages are missing (in ``missing.epoch``)."""
        return self.missing.count
