"""Counters of the hub, read by ``/readyz``, ``--metrics-path`` and tests."""

from __future__ import annotations

__all__ = ["HubMetrics"]


class HubMetrics:
    """What the hub of this process has done since it started; plain counters.

    Attributes:
        published: Messages published from this process.
        publish_errors: Publishes that raised (backend unavailable, queue full).
        received: Messages received from the backend (once per topic, not per
            subscriber).
        delivered: Frames handed to subscribers' connections (one per
            subscriber and message).
        skipped: Messages skipped for a subscriber whose backlog was full.
        slow_closed: Connections closed with 1013 for a full backlog.
        lost: Messages this process missed and could not recover (each counted
            once per topic, however many subscribers were told).
        recovered: Messages this process missed and recovered from history.
        replayed: Messages replayed from history to subscriptions with ``since``.
        gaps: Gap notices given (one per subscriber, or one per topic-wide gap).
        duplicates: Messages received twice and delivered once.
        epoch_changes: Times a topic's epoch changed under this process.
    """

    __slots__ = (
        "delivered",
        "duplicates",
        "epoch_changes",
        "gaps",
        "lost",
        "publish_errors",
        "published",
        "received",
        "recovered",
        "replayed",
        "skipped",
        "slow_closed",
    )

    def __init__(self) -> None:
        self.published = 0
        self.publish_errors = 0
        self.received = 0
        self.delivered = 0
        self.skipped = 0
        self.slow_closed = 0
        self.lost = 0
        self.recovered = 0
        self.replayed = 0
        self.gaps = 0
        self.duplicates = 0
        self.epoch_changes = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}
