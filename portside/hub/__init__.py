"""Pub/sub for WebSocket servers: topics, across workers and hosts, with gaps told.

``Hub(backend)`` subscribes connections to topics and publishes messages to
them. The in-memory backend serves one process; ``RedisBackend``
(``pip install 'portside[redis]'``) every worker of every host. Every message
has a position (epoch and offset) in its topic, so that missed messages are
noticed, recovered from history, or told. ``docs/hub.md`` describes it all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends.base import Backend, BackendListener, History
from .backends.memory import MemoryBackend
from .errors import BackendUnavailable, HubClosed, HubError
from .gap import Gap, GapReason
from .hub import Hub, SlowConsumer
from .metrics import HubMetrics
from .sequence import Missing, Position

if TYPE_CHECKING:  # pragma: no cover
    from .backends.redis import RedisBackend

__all__ = [
    "Backend",
    "BackendListener",
    "BackendUnavailable",
    "Gap",
    "GapReason",
    "History",
    "Hub",
    "HubClosed",
    "HubError",
    "HubMetrics",
    "MemoryBackend",
    "Missing",
    "Position",
    "RedisBackend",
    "SlowConsumer",
]


def __getattr__(name: str) -> Any:
    # RedisBackend needs redis-py, an extra: imported when asked for.
    if name == "RedisBackend":
        from .backends.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
