"""The self-pipe that wakes a thread blocked in poll()."""

from __future__ import annotations

import select

from portside.sync.waker import Waker


def readable(waker: Waker) -> bool:
    poller = select.poll()
    poller.register(waker.fd, select.POLLIN)
    return bool(poller.poll(0))


def test_wake_and_drain() -> None:
    waker = Waker()
    try:
        assert not readable(waker)
        waker.wake()
        waker.wake()
        assert readable(waker)
        waker.drain()
        assert not readable(waker)
        waker.drain()  # nothing to drain
    finally:
        waker.close()


def test_wake_many_times_never_blocks() -> None:
    waker = Waker()
    try:
        for _ in range(100_000):  # more than a pipe holds
            waker.wake()
        assert readable(waker)
    finally:
        waker.close()


def test_nothing_after_close() -> None:
    waker = Waker()
    waker.close()
    waker.close()
    waker.wake()  # no write to a descriptor number that may be reused
