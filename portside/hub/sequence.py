"""Positions in a topic and gap detection, without I/O.

Every message published to a topic gets a :class:`Position`: an *offset*, which
counts the topic's messages from 1, and an *epoch*, which names the timeline the
offsets belong to. The epoch changes when the backend loses its state (Redis
restarted empty, restored an older snapshot, or failed over): offsets then start
again from 1 and cannot be compared with those of the previous epoch.

:class:`Sequence` follows the positions one receiver has seen on one topic and
says, for each new position, whether it comes next, is a duplicate, or reveals
missing messages (a :class:`Missing` range).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Missing", "Position", "Sequence"]


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a message stands in its topic.

    Attributes:
        epoch: The timeline; a new one starts whenever the backend lost its state.
            ``""`` before the first message of a topic (offset 0).
        offset: The message's number in its epoch, from 1; 0 stands for "before
            the first message" (a topic with no message yet has offset 0).
    """

    epoch: str
    offset: int

    def to_json(self) -> dict[str, Any]:
        """The position as the wire format writes it: ``{"epoch": ..., "offset": ...}``."""
        return {"epoch": self.epoch, "offset": self.offset}

    @classmethod
    def from_json(cls, value: object) -> Position:
        """Read a position sent by a client, as :meth:`to_json` writes it.

        Raises:
            ValueError: If ``value`` is not such a mapping (a string epoch and a
                non-negative integer offset).
        """
        if not isinstance(value, dict):
            raise ValueError(f"a position is an object with epoch and offset, not {value!r}")
        epoch = value.get("epoch")
        offset = value.get("offset")
        if not isinstance(epoch, str) or len(epoch) > 64:
            raise ValueError(f"a position's epoch is a string of at most 64 characters: {epoch!r}")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"a position's offset is an integer >= 0: {offset!r}")
        return cls(epoch, offset)


@dataclasses.dataclass(frozen=True, slots=True)
class Missing:
    """Messages that a receiver did not get: offsets ``first`` to ``last`` of ``epoch``.

    Attributes:
        epoch: The epoch of the missing offsets.
        first: The first missing offset.
        last: The last missing offset (``last < first`` when none is missing in
            ``epoch``, which happens when only the epoch changed).
        epoch_changed: The epoch changed since the last position seen: the
            previous epoch's messages after it may be lost too, and cannot be
            counted (the backend forgot them).
    """

    epoch: str
    first: int
    last: int
    epoch_changed: bool = False

    @property
    def count(self) -> int:
        """How many messages of ``epoch`` are missing."""
        return max(0, self.last - self.first + 1)


NEXT = "next"
DUPLICATE = "duplicate"


class Sequence:
    """The positions one receiver has seen on one topic.

    Attributes:
        last: The last position seen, or ``None`` before the first.
    """

    __slots__ = ("last",)

    def __init__(self, last: Position | None = None) -> None:
        self.last = last

    def check(self, position: Position) -> Missing | str:
        """Compare ``position`` with the last one seen, without moving on.

        Returns:
            ``NEXT`` when it comes next (or is the first seen), ``DUPLICATE``
            when it was seen already, or the :class:`Missing` messages between
            the last position seen and this one.
        """
        last = self.last
        if last is None:
            return NEXT
        if last.epoch == "" and position.epoch:
            # Nothing was seen of any epoch yet: this one starts the timeline.
            if position.offset <= 1:
                return NEXT
            return Missing(position.epoch, 1, position.offset - 1)
        if position.epoch != last.epoch:
            # Offsets of the new epoch before this one were missed; what the
            # previous epoch had after `last` cannot be known.
            return Missing(position.epoch, 1, position.offset - 1, epoch_changed=True)
        if position.offset == last.offset + 1:
            return NEXT
        if position.offset <= last.offset:
            return DUPLICATE
        return Missing(position.epoch, last.offset + 1, position.offset - 1)

    def behind(self, head: Position) -> Missing | None:
        """What is missing when the topic's latest position is ``head``.

        Unlike :meth:`check`, ``head`` itself counts as missing: it was
        published, and not seen. ``None`` when nothing is missing.
        """
        last = self.last
        if last is None or head.epoch == last.epoch == "":
            return None
        if last.epoch == "":
            return Missing(head.epoch, 1, head.offset) if head.offset else None
        if head.epoch != last.epoch:
            return Missing(head.epoch, 1, head.offset, epoch_changed=True)
        if head.offset > last.offset:
            return Missing(head.epoch, last.offset + 1, head.offset)
        return None

    def advance(self, position: Position) -> None:
        """Record ``position`` as the last one seen."""
        self.last = position
