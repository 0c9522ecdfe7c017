"""The errors of the pub/sub hub.

::

    HubError
     ├── BackendUnavailable   the backend (Redis) cannot take the message now
     └── HubClosed            the hub was closed
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "HubClosed", "HubError"]


class HubError(Exception):
    """The root of the hub's errors."""


class BackendUnavailable(HubError):
    """The backend cannot take a message: Redis is unreachable, or the queue is full.

    The message was not published, or, when the connection broke while the
    publish was in flight, it may or may not have been: the message says which.
    """


class HubClosed(HubError):
    """The hub is closed: it publishes and subscribes no more."""
