"""The messages a connection received and the application has not read yet.

Between the socket and ``recv()`` sits a queue of whole messages (``str`` or
``bytes``) and of the :class:`~portside.protocol.events.Fragment` events of
fragmented messages, which ``recv()`` joins and ``recv_streaming()`` hands out
one by one. The queue is bounded by back-pressure, not by refusing items: once
it holds ``high`` items the connection stops reading the socket, so TCP pushes
back on the peer, and it reads again once the application brought the queue
down to ``low`` items.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Union

from ..protocol.events import Fragment

__all__ = ["Item", "MessageQueue", "queue_limits"]

#: What the queue holds: a whole message, or one fragment of a message.
Item = Union[str, bytes, Fragment]


def queue_limits(max_queue: object) -> tuple[int | None, int | None]:
    """Turn the ``max_queue`` option into high and low water marks.

    ``max_queue`` is ``None`` (no limit), a number of items ``n`` (reading
    stops at ``n`` and resumes at ``n // 4``), or a pair ``(high, low)``.

    Raises:
        TypeError: If ``max_queue`` has another type.
        ValueError: If the marks are out of range.
    """
    if max_queue is None:
        return None, None
    if isinstance(max_queue, tuple):
        if len(max_queue) != 2:
            raise TypeError(f"max_queue must be an int, (high, low) or None, not {max_queue!r}")
        high, low = max_queue
        for name, value in (("high", high), ("low", low)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(
                    f"max_queue {name} water mark must be an int or None, not {value!r}"
                )
        if high is None and low is None:
            return None, None
        if high is None:
            assert low is not None
            high = low * 4
        if low is None:
            low = high // 4
        if high < 1:
            raise ValueError(f"max_queue high water mark must be >= 1, not {high}")
        if not 0 <= low <= high:
            raise ValueError(f"max_queue low water mark must be between 0 and {high}, not {low}")
        return high, low
    if isinstance(max_queue, bool) or not isinstance(max_queue, int):
        raise TypeError(f"max_queue must be an int, (high, low) or None, not {max_queue!r}")
    if max_queue < 1:
        raise ValueError(f"max_queue must be >= 1 or None, not {max_queue}")
    return max_queue, max_queue >> 2


class MessageQueue:
    """A FIFO of received items with high and low water marks.

    Not thread-safe: the connection uses it under its lock.

    Args:
        high: Items at which reading should stop; ``None``: never.
        low: Items at which reading may resume.

    Attributes:
        paused: Whether the connection should leave the socket alone: set
            when the queue reaches ``high``, cleared when it drops to ``low``.
    """

    def __init__(self, high: int | None, low: int | None) -> None:
        self._items: collections.deque[Item] = collections.deque()
        self._high = high
        self._low = low if low is not None else 0
        self.paused = False

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def first(self) -> Item:
        """The first item, left in the queue."""
        return self._items[0]

    def put(self, item: Item) -> None:
        """Add an item at the end."""
        items = self._items
        items.append(item)
        if self._high is not None and len(items) >= self._high:
            self.paused = True

    def pop(self) -> tuple[Item, bool]:
        """Take the first item.

        Returns:
            The item, and whether reading may resume now (the queue just dropped
            to its low water mark).
        """
        item = self._items.popleft()
        if self.paused and len(self._items) <= self._low:
            self.paused = False
            return item, True
        return item, False

    def put_back(self, items: Iterable[Item]) -> None:
        """Put items taken from the front back in front, in their order."""
        self._items.extendleft(reversed(list(items)))
        if self._high is not None and len(self._items) >= self._high:
            self.paused = True

    def clear(self) -> None:
        """Drop every item (the connection is gone)."""
        self._items.clear()
        self.paused = False
