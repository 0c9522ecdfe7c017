"""The wire format of the hub: what a subscribed WebSocket client receives.

With ``Hub(envelope="json")`` (the default) every frame the hub sends is a text
frame holding one JSON object, whose ``type`` says what it is:

``message``
    ``{"type": "message", "topic": "room:1", "epoch": "5f1c9a2e", "offset": 42,
    "data": "hello"}``. A binary payload is base64-encoded, with
    ``"encoding": "base64"``.
``gap``
    ``{"type": "gap", "topic": "room:1", "epoch": "5f1c9a2e", "first": 40,
    "last": 41, "count": 2, "reason": "slow", "epoch_changed": false}``: the
    messages ``first`` to ``last`` of ``epoch`` will not come. ``reason`` is
    ``slow`` (this connection's backlog was full), ``backend`` (this worker
    lost them between Redis and itself, and history could not give them back)
    or ``history`` (a resubscription asked for messages that history no longer
    holds). ``epoch_changed`` is true when the epoch changed since the client's
    last position: the count then covers the new epoch only.
``subscribed``
    ``{"type": "subscribed", "topic": "room:1", "epoch": "5f1c9a2e", "offset":
    41}``: the subscription is live; messages after this position follow. A
    client that reconnects sends the last position it saw so that the server
    can subscribe it again with ``since`` and replay what it missed.

With ``Hub(envelope=None)`` the payload goes out as it was published, text or
binary, and clients are told nothing about positions or gaps (the server still
is, through ``on_gap``).
"""

from __future__ import annotations

import base64
import json
from typing import Literal, Union

from .sequence import Missing, Position

__all__ = ["EnvelopeFormat", "Payload", "TopicEnvelope", "gap_frame", "subscribed_frame"]

Payload = Union[str, bytes]
"""What is published: ``str`` (a text message) or ``bytes`` (a binary one)."""

EnvelopeFormat = Literal["json"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class TopicEnvelope:
    """Builds the ``message`` frames of one topic; the JSON of its name is computed once."""

    __slots__ = ("_prefix", "_prefix_epoch", "topic", "topic_json")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.topic_json = _dumps(topic)
        self._prefix_epoch: str | None = None
        self._prefix = ""

    def message(self, position: Position, payload: Payload) -> str:
        """The ``message`` frame for ``payload`` at ``position``."""
        if position.epoch != self._prefix_epoch:
            self._prefix_epoch = position.epoch
            self._prefix = (
                f'{{"type":"message","topic":{self.topic_json},'
                f'"epoch":{_dumps(position.epoch)},"offset":'
            )
        if isinstance(payload, str):
            return f'{self._prefix}{position.offset},"data":{_dumps(payload)}}}'
        data = base64.b64encode(payload).decode("ascii")
        return f'{self._prefix}{position.offset},"data":"{data}","encoding":"base64"}}'


def gap_frame(topic: str, missing: Missing, reason: str) -> str:
    """The ``gap`` frame telling a client that ``missing`` will not come."""
    return _dumps(
        {
            "type": "gap",
            "topic": topic,
            "epoch": missing.epoch,
            "first": missing.first,
            "last": missing.last,
            "count": missing.count,
            "reason": reason,
            "epoch_changed": missing.epoch_changed,
        }
    )


def subscribed_frame(topic: str, position: Position) -> str:
    """The ``subscribed`` frame: messages after ``position`` follow."""
    return _dumps(
        {"type": "subscribed", "topic": topic, "epoch": position.epoch, "offset": position.offset}
    )
