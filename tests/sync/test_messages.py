"""The queue between the socket and recv(): water marks and the max_queue option."""

from __future__ import annotations

import pytest

from portside.protocol.events import Fragment
from portside.sync.messages import MessageQueue, queue_limits


@pytest.mark.parametrize(
    ("option", "limits"),
    [
        (None, (None, None)),
        (16, (16, 4)),
        (1, (1, 0)),
        ((8, 2), (8, 2)),
        ((8, None), (8, 2)),
        ((None, 3), (12, 3)),
        ((None, None), (None, None)),
        ((5, 5), (5, 5)),
    ],
)
def test_queue_limits(option: object, limits: tuple[int | None, int | None]) -> None:
    assert queue_limits(option) == limits


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        ("16", TypeError),
        (True, TypeError),
        (2.5, TypeError),
        ((1, 2, 3), TypeError),
        ((4, 5), ValueError),
        ((4, -1), ValueError),
        ((0, 0), ValueError),
        (("a", 1), TypeError),
    ],
)
def test_queue_limits_refuses(option: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_queue"):
        queue_limits(option)


def test_pause_at_high_resume_at_low() -> None:
    queue = MessageQueue(4, 1)
    for i in range(3):
        queue.put(str(i))
    assert not queue.paused
    queue.put("3")
    assert queue.paused
    assert queue.pop() == ("0", False)
    assert queue.pop() == ("1", False)
    assert queue.paused
    assert queue.pop() == ("2", True)
    assert not queue.paused
    assert queue.pop() == ("3", False)
    assert not queue


def test_put_back_keeps_order_and_pauses() -> None:
    queue = MessageQueue(3, 0)
    queue.put(Fragment("c", True))
    fragments = [Fragment("a", False), Fragment("b", False)]
    queue.put_back(fragments)
    assert queue.first() == fragments[0]
    assert queue.paused
    assert [queue.pop()[0] for _ in range(3)] == [*fragments, Fragment("c", True)]


def test_no_limit_never_pauses() -> None:
    queue = MessageQueue(None, None)
    for _ in range(10_000):
        queue.put(b"x")
    assert not queue.paused
    assert len(queue) == 10_000
    queue.clear()
    assert len(queue) == 0
