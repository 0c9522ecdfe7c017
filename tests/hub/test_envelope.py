"""The wire format: what subscribed clients receive."""

from __future__ import annotations

import json

from portside.hub.envelope import TopicEnvelope, gap_frame, subscribed_frame
from portside.hub.sequence import Missing, Position


def test_text_message() -> None:
    envelope = TopicEnvelope("room:é")
    frame = envelope.message(Position("ab12", 3), 'hi "there"\n')
    assert json.loads(frame) == {
        "type": "message",
        "topic": "room:é",
        "epoch": "ab12",
        "offset": 3,
        "data": 'hi "there"\n',
    }
    # Not escaped: UTF-8 on the wire.
    assert "room:é" in frame


def test_binary_message_is_base64() -> None:
    frame = TopicEnvelope("t").message(Position("e", 1), b"\x00\xff")
    assert json.loads(frame) == {
        "type": "message",
        "topic": "t",
        "epoch": "e",
        "offset": 1,
        "data": "AP8=",
        "encoding": "base64",
    }


def test_epoch_change_rebuilds_the_prefix() -> None:
    envelope = TopicEnvelope("t")
    assert json.loads(envelope.message(Position("a", 9), "x"))["epoch"] == "a"
    assert json.loads(envelope.message(Position("b", 1), "x"))["epoch"] == "b"


def test_gap_frame() -> None:
    frame = gap_frame("t", Missing("e", 4, 6, epoch_changed=True), "backend")
    assert json.loads(frame) == {
        "type": "gap",
        "topic": "t",
        "epoch": "e",
        "first": 4,
        "last": 6,
        "count": 3,
        "reason": "backend",
        "epoch_changed": True,
    }


def test_subscribed_frame() -> None:
    assert json.loads(subscribed_frame("t", Position("e", 5))) == {
        "type": "subscribed",
        "topic": "t",
        "epoch": "e",
        "offset": 5,
    }
