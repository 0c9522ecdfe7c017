"""Local fan-out: deferred writes that keep the order of what a connection is sent.

The hub writes a burst of messages to each subscriber in one write at the end
of the event loop's iteration; anything else written on a subscriber's
connection meanwhile (by the application, or by the hub for another topic)
goes out after what the hub was given before. Over real loopback sockets, in
the three modes of the suite (C, pure Python, uvloop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import portside
from portside.hub import Hub, fanout
from tests.asyncio.helpers import RawClient, running, url
from tests.framing import client_frame, close_payload

TEXT, CLOSE = 0x81, 0x88


class Subscriber:
    """A server connection subscribed to topics, the raw client at its other end,
    and the writes the hub's fan-out made on it."""

    def __init__(self, ws: portside.ServerConnection, raw: RawClient) -> None:
        self.ws = ws
        self.raw = raw
        self.writes: list[bytes] = []
        write_frame = ws._write_frame

        def counting(frame: bytes) -> None:
            write_frame(frame)  # after the barrier's writes, which it may run
            self.writes.append(frame)

        # broadcast() and the hub's bursts write with it.
        ws._write_frame = counting  # type: ignore[method-assign]

    async def frames(self, count: int) -> list[tuple[int, bytes]]:
        return [await self.raw.read_frame() for _ in range(count)]


@asynccontextmanager
async def subscribers(
    hub: Hub, *topic_lists: list[str], **kwargs: Any
) -> AsyncIterator[list[Subscriber]]:
    """One subscriber per list of topics, each subscribed to those."""
    queue: asyncio.Queue[portside.ServerConnection] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        topics = ws.path[1:].split(",") if ws.path != "/" else []
        for topic in topics:
            await hub.subscribe(ws, topic)
        await queue.put(ws)
        await done.wait()

    async with running(handler, **kwargs) as server:
        opened: list[Subscriber] = []
        try:
            for topics in topic_lists:
                raw = await RawClient.connect(server, "/" + ",".join(topics))
                opened.append(Subscriber(await queue.get(), raw))
            yield opened
        finally:
            done.set()
            for subscriber in opened:
                await subscriber.raw.close()


def text(payload: str) -> tuple[int, bytes]:
    return (TEXT, payload.encode())


# What the application may do on a subscriber's connection right after a
# publish, and the frames that follow the published ones.
WRITES: dict[str, tuple[Callable[[Any], Awaitable[Any] | None], list[tuple[int, bytes]]]] = {
    "send": (lambda ws: ws.send("direct"), [text("direct")]),
    "send bytes": (lambda ws: ws.send(b"direct"), [(0x82, b"direct")]),
    "send non-ASCII": (lambda ws: ws.send("dïrect"), [(TEXT, "dïrect".encode())]),
    "send text=True": (lambda ws: ws.send(b"direct", text=True), [text("direct")]),
    "send fragments": (
        lambda ws: ws.send(["di", "rect"]),
        [(0x01, b"di"), (0x00, b"rect"), (0x80, b"")],
    ),
    "ping": (lambda ws: ws.ping(b"ping"), [(0x89, b"ping")]),
    "pong": (lambda ws: ws.pong(b"pong"), [(0x8A, b"pong")]),
    "broadcast": (lambda ws: portside.broadcast([ws], "direct"), [text("direct")]),
    "close": (lambda ws: ws.close(1001, "bye"), [(CLOSE, close_payload(1001, "bye"))]),
}


@pytest.mark.parametrize("write", WRITES)
async def test_publish_then_write_on_a_subscriber_keeps_program_order(write: str) -> None:
    operation, expected = WRITES[write]
    async with Hub(envelope=None) as hub, subscribers(hub, ["t"]) as (subscriber,):

        async def read() -> list[tuple[int, bytes]]:
            frames = await subscriber.frames(2 + len(expected))
            if frames[-1][0] == CLOSE:
                subscriber.raw.send(client_frame(8, close_payload(1001)))
            return frames

        reading = asyncio.ensure_future(read())
        # In one iteration of the loop: the memory backend hands the messages
        # to the hub at once, which defers their writes to the iteration's end;
        # the write after them starts before that (close() then waits).
        await hub.publish("t", "m1")
        await hub.publish("t", "m2")
        result = operation(subscriber.ws)
        if result is not None:
            await result
        assert await reading == [text("m1"), text("m2"), *expected]
        # Still one write for the burst: the barrier wrote it early, once.
        assert subscriber.writes[0] == b"\x81\x02m1\x81\x02m2"
        assert subscriber.writes[1:] == ([b"\x81\x06direct"] if write == "broadcast" else [])


async def test_a_burst_goes_out_in_one_write_per_subscriber() -> None:
    async with Hub(envelope=None) as hub, subscribers(hub, ["t"], ["t"], ["t"]) as opened:
        for n in range(20):
            await hub.publish("t", f"m{n}")
        for subscriber in opened:
            assert await subscriber.frames(20) == [text(f"m{n}") for n in range(20)]
            assert subscriber.writes == [
                b"".join(b"\x81\x02m%d" % n for n in range(10))
                + b"".join(b"\x81\x03m%d" % n for n in range(10, 20))
            ]
        assert hub.metrics.delivered == 60


async def test_a_burst_then_a_direct_write_is_one_write_then_the_other() -> None:
    async with Hub(envelope=None) as hub, subscribers(hub, ["t"], ["t"]) as (one, two):
        for n in range(5):
            await hub.publish("t", f"m{n}")
        await one.ws.send("direct")
        # The barrier wrote the burst to every subscriber: to `two` as well.
        for subscriber in (one, two):
            assert len(subscriber.writes) == 1
        assert await one.frames(6) == [*(text(f"m{n}") for n in range(5)), text("direct")]
        assert await two.frames(5) == [text(f"m{n}") for n in range(5)]
        await hub.publish("t", "later")
        await one.ws.send("direct again")
        assert await one.frames(2) == [text("later"), text("direct again")]


async def test_frames_of_several_topics_keep_their_order_on_a_connection() -> None:
    async with (
        Hub(envelope=None) as hub,
        subscribers(hub, ["a", "b"], ["a"], ["b"], ["a", "b", "c"]) as opened,
    ):
        both, only_a, only_b, three = opened
        for message in ("a1", "b1", "a2", "c1", "b2", "a3"):
            await hub.publish(message[0], message)
        assert await both.frames(5) == [text(m) for m in ("a1", "b1", "a2", "b2", "a3")]
        assert await only_a.frames(3) == [text(m) for m in ("a1", "a2", "a3")]
        assert await only_b.frames(2) == [text(m) for m in ("b1", "b2")]
        assert await three.frames(6) == [text(m) for m in ("a1", "b1", "a2", "c1", "b2", "a3")]
        # Each got its frames in one write: those of one topic built once.
        for subscriber in opened:
            assert len(subscriber.writes) == 1
        assert only_a.writes == [b"\x81\x02a1\x81\x02a2\x81\x02a3"]
        assert hub.metrics.delivered == 16


async def test_compressed_subscribers_keep_order() -> None:
    # With context takeover, each compressed frame depends on the ones before:
    # the hub's frames are compressed before the application's.
    queue: asyncio.Queue[portside.ServerConnection] = asyncio.Queue()

    async with Hub(envelope=None) as hub:

        async def handler(ws: portside.ServerConnection) -> None:
            await hub.subscribe(ws, "t")
            await queue.put(ws)
            await ws.wait_closed()

        async with running(handler, compression="deflate") as server:
            async with portside.connect(url(server), compression="deflate") as client:
                ws = await queue.get()
                assert ws.protocol.deflate is not None
                await hub.publish("t", "published " * 10)
                await ws.send("direct " * 10)
                await hub.publish("t", "one " * 10)
                await hub.publish("t", "two " * 10)
                await ws.send("direct again " * 10)
                received = [await asyncio.wait_for(client.recv(), 5) for _ in range(5)]
                assert received == [
                    "published " * 10,
                    "direct " * 10,
                    "one " * 10,
                    "two " * 10,
                    "direct again " * 10,
                ]


async def test_the_barrier_is_set_while_the_connection_has_topics() -> None:
    async with Hub(envelope=None) as hub, subscribers(hub, ["a"], ["a"]) as (one, two):
        ws = one.ws
        barrier = ws._write_barrier
        assert barrier is not None
        assert two.ws._write_barrier is barrier  # the event loop's, shared
        await hub.subscribe(ws, "b")
        hub.unsubscribe(ws, "a")
        assert ws._write_barrier is barrier
        hub.unsubscribe(ws, "b")
        assert ws._write_barrier is None
        await hub.subscribe(ws, "c")
        assert ws._write_barrier is barrier
        # Closed: forgotten, and the barrier with it.
        await two.raw.close()
        await two.ws.wait_closed()
        while hub.topics(two.ws):
            await asyncio.sleep(0)
        assert two.ws._write_barrier is None
    # The hub closed: it let every connection go.
    assert ws._write_barrier is None


async def test_two_hubs_share_the_barrier() -> None:
    async with (
        Hub(envelope=None) as first,
        Hub(envelope=None) as second,
        subscribers(first, ["t"]) as (subscriber,),
    ):
        ws = subscriber.ws
        await second.subscribe(ws, "u")
        barrier = ws._write_barrier
        for hub, message in ((first, "one"), (second, "two"), (first, "three")):
            await hub.publish("t" if hub is first else "u", message)
        await ws.send("four")
        assert await subscriber.frames(4) == [text(m) for m in ("one", "two", "three", "four")]
        first.unsubscribe(ws, "t")
        assert ws._write_barrier is barrier  # the second hub still has it
        second.unsubscribe(ws, "u")
        assert ws._write_barrier is None


async def test_the_barrier_does_not_raise_when_delivery_fails(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> list[Any]:
        raise RuntimeError("broken fan-out")

    async with Hub(envelope=None) as hub, subscribers(hub, ["t"]) as (subscriber,):
        with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, "portside.hub"):
            patch.setattr(fanout, "fan_out", broken)
            await hub.publish("t", "lost")
            await subscriber.ws.send("direct")  # ran the barrier: no exception here
        assert [record.getMessage() for record in caplog.records] == [
            "hub: delivering messages failed"
        ]
        await hub.publish("t", "after")
        assert await subscriber.frames(2) == [text("direct"), text("after")]


async def test_a_slow_subscriber_closed_during_a_barrier_leaves_the_others() -> None:
    async with Hub(envelope=None, slow_consumer="close") as hub:
        async with subscribers(hub, ["t"], ["t"], write_limit=1024) as (slow, fast):
            slow.raw.transport.pause_reading()
            payload = "x" * 1000
            while hub.metrics.slow_closed == 0:
                await hub.publish("t", payload)
                await fast.ws.send("direct")  # the barrier writes the burst first
                await asyncio.sleep(0)
            assert hub.topics(slow.ws) == frozenset()
            assert slow.ws._write_barrier is None
            assert fast.ws._write_barrier is not None
            sent = hub.metrics.published
            frames = await fast.frames(2 * sent)
            assert frames == [text(payload), text("direct")] * sent


async def test_a_failed_write_to_one_subscriber_leaves_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(frame: bytes) -> None:
        raise OSError("broken write")

    async with Hub(envelope=None) as hub, subscribers(hub, ["t"], ["t"]) as (broken, fine):
        broken.ws._write_frame = fail  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING):
            await hub.publish("t", "m1")
            await hub.publish("t", "m2")
            await fine.ws.send("direct")
        assert await fine.frames(3) == [text("m1"), text("m2"), text("direct")]
        assert "skipped hub messages: failed to write: OSError('broken write')" in caplog.text
