"""The hub with the in-memory backend, over real loopback connections."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest

import portside
from portside.hub import (
    BackendUnavailable,
    Gap,
    Hub,
    HubClosed,
    MemoryBackend,
    Missing,
    Position,
)
from tests.asyncio.helpers import running, url
from tests.hub.helpers import LossyBackend, hub_server, receive_json, subscriber


async def test_publish_reaches_the_subscribers_of_the_topic_in_order() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        one, _ = await subscriber(server, "room:1")
        two, subscribed = await subscriber(server, "room:1")
        other, _ = await subscriber(server, "room:2")
        assert subscribed["subscribed"]["offset"] == 0
        assert hub.subscribers("room:1") == 2
        for n in range(5):
            position = await hub.publish("room:1", f"m{n}")
            assert position == Position(hub.backend.epoch, n + 1)  # type: ignore[attr-defined]
        await hub.publish("room:2", "elsewhere")
        for client in (one, two):
            frames = [await receive_json(client) for _ in range(5)]
            assert [frame["data"] for frame in frames] == [f"m{n}" for n in range(5)]
            assert [frame["offset"] for frame in frames] == [1, 2, 3, 4, 5]
            assert {frame["topic"] for frame in frames} == {"room:1"}
        assert (await receive_json(other))["data"] == "elsewhere"
        assert hub.metrics.published == 6
        assert hub.metrics.delivered == 11
        for client in (one, two, other):
            await client.close()


async def test_a_subscriber_publishes_through_its_connection() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        one, _ = await subscriber(server, "t")
        two, _ = await subscriber(server, "t")
        await one.send(b"\x00bin")
        for client in (one, two):
            frame = await receive_json(client)
            assert (frame["data"], frame["encoding"]) == ("AGJpbg==", "base64")
        await one.close()
        await two.close()


async def test_subscribed_frame_gives_the_position_to_start_from() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        await hub.publish("t", "before")
        client, subscribed = await subscriber(server, "t")
        assert subscribed["subscribed"]["offset"] == 1
        await hub.publish("t", "after")
        assert (await receive_json(client))["offset"] == 2
        await client.close()


async def test_topics_unsubscribe_and_automatic_unsubscribe_on_close() -> None:
    async with Hub(envelope=None) as hub:
        connections: list[portside.ServerConnection] = []
        done = asyncio.Event()

        async def handler(ws: portside.ServerConnection) -> None:
            connections.append(ws)
            await hub.subscribe(ws, "a")
            await hub.subscribe(ws, "b")
            # Again: nothing changes.
            await hub.subscribe(ws, "b")
            await ws.send("ready")
            await done.wait()

        async with running(handler) as server:
            client = await portside.connect(url(server))
            assert await client.recv() == "ready"
            ws = connections[0]
            assert hub.topics(ws) == {"a", "b"}
            hub.unsubscribe(ws, "a")
            hub.unsubscribe(ws, "a")  # not subscribed: nothing happens
            hub.unsubscribe(ws, "never")
            assert hub.topics(ws) == {"b"}
            assert hub.subscribers("a") == 0
            assert hub.subscribers("b") == 1
            await client.close()
            await ws.wait_closed()
            await asyncio.sleep(0)  # the hub's watcher runs
            assert hub.topics(ws) == frozenset()
            assert hub.subscribers("b") == 0
            assert hub.stats()["topics"] == 0
            # A closed connection subscribes to nothing.
            await hub.subscribe(ws, "c")
            assert hub.topics(ws) == frozenset()
            done.set()


async def test_unsubscribing_the_last_topic_forgets_the_connection() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        (ws,) = list(server.connections)
        hub.unsubscribe(ws, "t")
        await hub.publish("t", "nobody")
        assert hub.metrics.delivered == 0
        assert hub.topics(ws) == frozenset()
        await client.close()


async def test_raw_envelope_sends_payloads_as_published() -> None:
    async with Hub(envelope=None) as hub:
        ready = asyncio.Event()

        async def handler(ws: portside.ServerConnection) -> None:
            await hub.subscribe(ws, "t")
            ready.set()
            await ws.wait_closed()

        async with running(handler) as server:
            client = await portside.connect(url(server))
            await ready.wait()
            await hub.publish("t", "text")
            await hub.publish("t", bytearray(b"\x01\x02"))
            await hub.publish("t", memoryview(b"mv"))
            assert await client.recv() == "text"
            assert await client.recv() == b"\x01\x02"
            assert await client.recv() == b"mv"
            await client.close()


async def test_messages_lost_on_the_way_are_told_without_history() -> None:
    gaps: list[Gap] = []
    backend = LossyBackend()
    async with Hub(backend, on_gap=gaps.append) as hub, hub_server(hub) as server:
        one, _ = await subscriber(server, "t")
        two, _ = await subscriber(server, "t")
        await hub.publish("t", "1")
        backend.drop = 2
        await hub.publish("t", "2")
        await hub.publish("t", "3")
        await hub.publish("t", "4")
        for client in (one, two):
            assert (await receive_json(client))["data"] == "1"
            gap = await receive_json(client)
            assert gap == {
                "type": "gap",
                "topic": "t",
                "epoch": backend.epoch,
                "first": 2,
                "last": 3,
                "count": 2,
                "reason": "backend",
                "epoch_changed": False,
            }
            assert (await receive_json(client))["data"] == "4"
        assert gaps == [Gap("t", Missing(backend.epoch, 2, 3), "backend")]
        assert gaps[0].count == 2
        assert hub.metrics.lost == 2
        assert hub.metrics.gaps == 2  # both subscribers told
        await one.close()
        await two.close()


async def test_messages_lost_on_the_way_are_recovered_from_history() -> None:
    gaps: list[Gap] = []
    backend = LossyBackend()
    async with Hub(backend, history=10, on_gap=gaps.append) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        await hub.publish("t", "1")
        backend.drop = 3
        for n in range(2, 7):
            await hub.publish("t", str(n))
        frames = [await receive_json(client) for _ in range(6)]
        assert [frame["data"] for frame in frames] == ["1", "2", "3", "4", "5", "6"]
        assert [frame["offset"] for frame in frames] == [1, 2, 3, 4, 5, 6]
        assert gaps == []
        assert hub.metrics.recovered == 3
        assert hub.metrics.lost == 0
        await client.close()


async def test_recovery_tells_what_history_no_longer_holds() -> None:
    backend = LossyBackend()
    async with Hub(backend, history=2) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        backend.drop = 4
        for n in range(1, 6):
            await hub.publish("t", str(n))
        # 1-4 lost on the way; history holds 4 and 5 only.
        gap = await receive_json(client)
        assert (gap["type"], gap["first"], gap["last"], gap["count"]) == ("gap", 1, 3, 3)
        assert [(await receive_json(client))["data"] for _ in range(2)] == ["4", "5"]
        assert hub.metrics.recovered == 1
        assert hub.metrics.lost == 3
        await client.close()


async def test_resync_finds_what_was_missed_while_away() -> None:
    backend = LossyBackend()
    async with Hub(backend) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        await hub.publish("t", "1")
        assert (await receive_json(client))["offset"] == 1
        backend.drop = 2
        await hub.publish("t", "2")
        await hub.publish("t", "3")
        # What a backend does after reconnecting: the latest position.
        hub.on_resync("t", Position(backend.epoch, 3))
        gap = await receive_json(client)
        assert (gap["first"], gap["last"], gap["reason"]) == (2, 3, "backend")
        # Up to date: nothing more.
        hub.on_resync("t", Position(backend.epoch, 3))
        hub.on_resync("unknown topic", Position(backend.epoch, 3))
        hub.on_message("unknown topic", Position(backend.epoch, 3), "x")
        await hub.publish("t", "4")
        assert (await receive_json(client))["offset"] == 4
        await client.close()


async def test_resync_recovers_from_history_and_keeps_later_messages_in_order() -> None:
    backend = LossyBackend()
    async with Hub(backend, history=10) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        await hub.publish("t", "1")
        backend.drop = 2
        await hub.publish("t", "2")
        await hub.publish("t", "3")
        hub.on_resync("t", Position(backend.epoch, 3))
        # Arrives while the recovery reads history: waits for it.
        await hub.publish("t", "4")
        data = [(await receive_json(client))["data"] for _ in range(4)]
        assert data == ["1", "2", "3", "4"]
        assert hub.metrics.recovered == 2
        await client.close()


async def test_duplicates_are_dropped() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        position = await hub.publish("t", "1")
        hub.on_message("t", position, "1 again")
        await hub.publish("t", "2")
        assert [(await receive_json(client))["data"] for _ in range(2)] == ["1", "2"]
        assert hub.metrics.duplicates == 1
        await client.close()


async def test_new_epoch_is_noticed(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()
    async with Hub(backend) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        await hub.publish("t", "1")
        # As if the backend had restarted: a new epoch, whose first 2 were missed.
        hub.on_message("t", Position("new", 3), "3")
        assert (await receive_json(client))["data"] == "1"
        gap = await receive_json(client)
        assert (gap["epoch"], gap["first"], gap["last"], gap["epoch_changed"]) == (
            "new",
            1,
            2,
            True,
        )
        assert (await receive_json(client))["data"] == "3"
        assert hub.metrics.epoch_changes == 1
        assert "new epoch new" in caplog.text
        await client.close()


async def test_subscribe_since_replays_from_history() -> None:
    async with Hub(history=5) as hub, hub_server(hub) as server:
        for n in range(1, 5):
            await hub.publish("t", str(n))
        epoch = hub.backend.epoch  # type: ignore[attr-defined]
        client, frames = await subscriber(server, "t", since=Position(epoch, 2))
        assert [frame["data"] for frame in frames["before"]] == ["3", "4"]
        assert frames["subscribed"]["offset"] == 4
        await hub.publish("t", "5")
        assert (await receive_json(client))["offset"] == 5
        assert hub.metrics.replayed == 2
        await client.close()


async def test_subscribe_since_tells_what_history_no_longer_holds() -> None:
    gaps: list[Gap] = []
    async with Hub(history=2, on_gap=gaps.append) as hub, hub_server(hub) as server:
        for n in range(1, 7):
            await hub.publish("t", str(n))
        epoch = hub.backend.epoch  # type: ignore[attr-defined]
        client, frames = await subscriber(server, "t", since=Position(epoch, 1))
        gap, five, six = frames["before"]
        assert (gap["type"], gap["first"], gap["last"], gap["reason"]) == ("gap", 2, 4, "history")
        assert (five["data"], six["data"]) == ("5", "6")
        assert gaps[0].connection is not None
        assert gaps[0].count == 3
        await client.close()


async def test_subscribe_since_another_epoch_replays_the_current_one() -> None:
    async with Hub(history=10) as hub, hub_server(hub) as server:
        await hub.publish("t", "1")
        await hub.publish("t", "2")
        client, frames = await subscriber(server, "t", since=Position("gone", 7))
        assert [frame["data"] for frame in frames["before"]] == ["1", "2"]
        await client.close()
        # An empty epoch: the client had seen nothing.
        client, frames = await subscriber(server, "t", since=Position("", 0))
        assert [frame["data"] for frame in frames["before"]] == ["1", "2"]
        await client.close()


async def test_subscribe_since_without_history_tells_the_gap() -> None:
    async with Hub() as hub, hub_server(hub) as server:
        for n in range(3):
            await hub.publish("t", str(n))
        epoch = hub.backend.epoch  # type: ignore[attr-defined]
        client, frames = await subscriber(server, "t", since=Position(epoch, 1))
        (gap,) = frames["before"]
        assert (gap["first"], gap["last"], gap["count"]) == (2, 3, 2)
        await client.close()
        # Up to date, or ahead: nothing to replay.
        client, frames = await subscriber(server, "t", since=Position(epoch, 9))
        assert frames["before"] == []
        assert frames["subscribed"]["offset"] == 3
        await client.close()


async def test_subscribe_since_on_an_empty_topic() -> None:
    async with Hub(history=3) as hub, hub_server(hub) as server:
        client, frames = await subscriber(server, "t", since=Position("old", 4))
        assert frames["before"] == []
        epoch = hub.backend.epoch  # type: ignore[attr-defined]
        assert frames["subscribed"] == {
            "type": "subscribed",
            "topic": "t",
            "epoch": epoch,
            "offset": 0,
        }
        await client.close()


class SlowHistory(MemoryBackend):
    """A memory backend whose history waits until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def history(self, topic: str, after: Position, upto: int | None = None) -> Any:
        await self.gate.wait()
        return await super().history(topic, after, upto)


async def test_messages_published_during_a_replay_follow_it_in_order() -> None:
    backend = SlowHistory()
    async with Hub(backend, history=10) as hub, hub_server(hub) as server:
        await hub.publish("t", "1")
        epoch = hub.backend.epoch  # type: ignore[attr-defined]
        task = asyncio.create_task(subscriber(server, "t", since=Position(epoch, 0)))
        while hub.subscribers("t") == 0:
            await asyncio.sleep(0)  # let the client subscribe (no time passes)
        # Published while the subscription waits for history: in it and live.
        await hub.publish("t", "2")
        backend.gate.set()
        client, frames = await task
        assert [frame["data"] for frame in frames["before"]] == ["1", "2"]
        await hub.publish("t", "3")
        assert (await receive_json(client))["data"] == "3"
        await client.close()


async def test_subscribing_again_with_since_replays_again() -> None:
    async with Hub(history=10) as hub:
        ready = asyncio.Event()
        connections: list[portside.ServerConnection] = []

        async def handler(ws: portside.ServerConnection) -> None:
            connections.append(ws)
            await hub.subscribe(ws, "t")
            ready.set()
            await ws.wait_closed()

        async with running(handler) as server:
            client = await portside.connect(url(server))
            await ready.wait()
            assert (await receive_json(client))["type"] == "subscribed"
            await hub.publish("t", "1")
            await hub.publish("t", "2")
            assert [(await receive_json(client))["offset"] for _ in range(2)] == [1, 2]
            epoch = hub.backend.epoch  # type: ignore[attr-defined]
            await hub.subscribe(connections[0], "t", since=Position(epoch, 1))
            assert (await receive_json(client))["offset"] == 2
            assert (await receive_json(client))["type"] == "subscribed"
            await client.close()


def small_buffers(ws: portside.ServerConnection) -> None:
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def stalled_client(server: portside.Server, topic: str) -> portside.ClientConnection:
    """A subscriber that reads nothing more once subscribed, with small socket buffers."""
    sock = socket.create_connection(server.sockets[0].getsockname()[:2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client = await portside.connect(url(server, "/" + topic), sock=sock, max_queue=1)
    assert (await receive_json(client))["type"] == "subscribed"
    client.transport.pause_reading()
    return client


async def test_slow_subscriber_is_skipped_counted_and_told() -> None:
    gaps: list[Gap] = []
    async with Hub(on_gap=gaps.append) as hub:
        ready = asyncio.Event()

        async def handler(ws: portside.ServerConnection) -> None:
            small_buffers(ws)
            await hub.subscribe(ws, "t")
            ready.set()
            await ws.wait_closed()

        async with running(handler, write_limit=8192) as server:
            fast, _ = await subscriber(server, "t")
            slow = await stalled_client(server, "t")
            payload = "x" * 2000
            published = 0
            # Until the slow one's backlog is full (bounded: the buffers are small).
            while hub.metrics.skipped == 0:
                await hub.publish("t", payload)
                published += 1
                assert published < 1000
                assert (await receive_json(fast))["offset"] == published
            for _ in range(5):
                await hub.publish("t", payload)
                published += 1
                assert (await receive_json(fast))["offset"] == published
            # Those five are skipped too while its backlog stays full; but the
            # kernel may take more of it meanwhile (on a loaded machine, the
            # loopback delivers late), and then it is served again, after a gap.
            # The slow one reads again: every message either received or told,
            # once, in order; the gaps are what was skipped.
            slow.transport.resume_reading()
            told: list[int] = []
            gap_frames = []
            while not told or told[-1] < published:
                frame = await receive_json(slow)
                if frame["type"] == "gap":
                    assert frame["reason"] == "slow"
                    assert frame["count"] == frame["last"] - frame["first"] + 1
                    gap_frames.append(frame)
                    told.extend(range(frame["first"], frame["last"] + 1))
                else:
                    told.append(frame["offset"])
            assert told == list(range(1, published + 1))
            skipped = sum(frame["count"] for frame in gap_frames)
            assert hub.metrics.skipped == skipped >= 1
            assert [gap.count for gap in gaps] == [frame["count"] for frame in gap_frames]
            assert {gap.reason for gap in gaps} == {"slow"}
            assert hub.stats()["lagging"] == 0
            # Served again.
            await hub.publish("t", "after")
            assert (await receive_json(slow))["data"] == "after"
            assert (await receive_json(fast))["data"] == "after"
            await slow.close()
            await fast.close()


async def test_slow_subscriber_is_told_even_if_nothing_else_comes() -> None:
    async with Hub() as hub:

        async def handler(ws: portside.ServerConnection) -> None:
            small_buffers(ws)
            await hub.subscribe(ws, "t")
            await ws.wait_closed()

        async with running(handler, write_limit=8192) as server:
            slow = await stalled_client(server, "t")
            while hub.metrics.skipped == 0:
                await hub.publish("t", "x" * 2000)
                await asyncio.sleep(0)  # the outbox is written at the end of the iteration
            slow.transport.resume_reading()
            # The lag sweep finds room and tells it, without another message.
            while (frame := await receive_json(slow))["type"] != "gap":
                pass
            assert frame["count"] == 1
            await slow.close()


async def drain(client: portside.ClientConnection) -> None:
    async for _ in client:
        pass


async def test_slow_subscriber_is_closed_with_1013() -> None:
    async with Hub(slow_consumer="close") as hub:

        async def handler(ws: portside.ServerConnection) -> None:
            small_buffers(ws)
            await hub.subscribe(ws, "t")
            await ws.wait_closed()

        async with running(handler, write_limit=8192, close_timeout=1) as server:
            fast, _ = await subscriber(server, "t")
            slow = await stalled_client(server, "t")
            while hub.metrics.slow_closed == 0:
                await hub.publish("t", "x" * 2000)
                await receive_json(fast)
            assert hub.subscribers("t") == 1
            slow.transport.resume_reading()
            with pytest.raises(portside.ConnectionClosedError):
                await drain(slow)
            assert slow.close_code == 1013
            await fast.close()


async def test_on_gap_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(gap: Gap) -> None:
        raise RuntimeError("boom")

    backend = LossyBackend()
    async with Hub(backend, on_gap=broken) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        backend.drop = 1
        await hub.publish("t", "1")
        await hub.publish("t", "2")
        assert (await receive_json(client))["type"] == "gap"
        assert "on_gap failed" in caplog.text
        await client.close()


async def test_history_per_topic() -> None:
    hub = Hub(history=lambda topic: 3 if topic.startswith("kept:") else 0)
    assert hub.history_for("kept:1") == 3
    assert hub.history_for("other") == 0
    bad = Hub(history=lambda topic: -1)
    with pytest.raises(ValueError, match="history"):
        bad.history_for("t")


async def test_hub_lifecycle() -> None:
    hub = Hub()
    assert not hub.ready
    await hub.start()
    await hub.wait_ready()
    assert hub.ready
    await hub.close()
    await hub.close()
    assert not hub.ready
    with pytest.raises(HubClosed):
        await hub.publish("t", "x")
    with pytest.raises(HubClosed):
        await hub.start()
    # Closed before it started: nothing to close.
    await Hub().close()


async def test_close_unsubscribes_everyone() -> None:
    hub = Hub()
    async with hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        (ws,) = list(server.connections)
        await hub.close()
        assert hub.topics(ws) == frozenset()
        await client.close()


async def test_starts_on_first_use() -> None:
    hub = Hub()
    await hub.publish("t", "x")
    assert hub.ready
    await hub.close()


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="envelope"):
        Hub(envelope="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slow_consumer"):
        Hub(slow_consumer="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="history"):
        Hub(history=-1)
    with pytest.raises(ValueError, match="history"):
        Hub(history=True)
    with pytest.raises(TypeError, match="on_gap"):
        Hub(on_gap=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backend"):
        Hub(object())  # type: ignore[arg-type]
    assert Hub(logger="custom").logger is logging.getLogger("custom")


async def test_bad_arguments() -> None:
    async with Hub() as hub:
        with pytest.raises(TypeError, match="topic"):
            await hub.publish(1, "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="topic"):
            await hub.publish("", "x")
        with pytest.raises(ValueError, match="topic"):
            await hub.publish("t" * 1025, "x")
        with pytest.raises(TypeError, match="message"):
            await hub.publish("t", 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="message"):
            await hub.publish("t", {"a": 1})  # type: ignore[arg-type]
        async with hub_server(hub) as server:
            client, _ = await subscriber(server, "t")
            (ws,) = list(server.connections)
            with pytest.raises(TypeError, match="since"):
                hub.subscribe(ws, "t", since=("e", 1))  # type: ignore[arg-type]
            await client.close()


def test_gap_is_json_serializable_through_its_missing_range() -> None:
    gap = Gap("t", Missing("e", 1, 2), "slow")
    assert (
        json.dumps({"count": gap.count, "reason": gap.reason}) == '{"count": 2, "reason": "slow"}'
    )


async def test_recovery_without_history_access_tells_everything() -> None:
    class NoHistory(LossyBackend):
        async def history(self, topic: str, after: Position, upto: int | None = None) -> Any:
            raise BackendUnavailable("no history today")

    backend = NoHistory()
    async with Hub(backend, history=10) as hub, hub_server(hub) as server:
        client, _ = await subscriber(server, "t")
        backend.drop = 2
        for n in range(3):
            await hub.publish("t", str(n))
        gap = await receive_json(client)
        assert (gap["type"], gap["first"], gap["last"]) == ("gap", 1, 2)
        assert (await receive_json(client))["data"] == "2"
        assert hub.metrics.lost == 2
        await client.close()


async def test_gap_during_a_replay_reaches_the_new_subscriber_once() -> None:
    gate = asyncio.Event()

    class SlowLossy(LossyBackend):
        async def history(self, topic: str, after: Position, upto: int | None = None) -> Any:
            if upto is None:  # the replay of a subscription, not a recovery
                await gate.wait()
            return await super().history(topic, after, upto)

    backend = SlowLossy()
    async with Hub(backend) as hub, hub_server(hub) as server:
        live, _ = await subscriber(server, "t")
        await hub.publish("t", "1")
        task = asyncio.create_task(subscriber(server, "t", since=Position(backend.epoch, 1)))
        while hub.subscribers("t") < 2:
            await asyncio.sleep(0)  # let the client subscribe (no time passes)
        backend.drop = 1
        await hub.publish("t", "2")  # lost on the way: a gap for everyone
        await hub.publish("t", "3")
        gate.set()
        joined, frames = await task
        # The replay has 2 and 3 (no history: a gap for them instead), then the
        # buffered gap notice and message 3 follow only if not covered already.
        kinds = [frame["type"] for frame in frames["before"]]
        assert kinds == ["gap"]
        assert (frames["before"][0]["first"], frames["before"][0]["last"]) == (2, 3)
        await hub.publish("t", "4")
        assert (await receive_json(joined))["data"] == "4"
        assert [(await receive_json(live))["type"] for _ in range(3)] == [
            "message",
            "gap",
            "message",
        ]
        await live.close()
        await joined.close()


async def test_unsubscribe_or_resubscribe_during_a_replay() -> None:
    backend = SlowHistory()
    async with Hub(backend, history=5) as hub:
        connections: list[portside.ServerConnection] = []
        ready = asyncio.Event()

        async def handler(ws: portside.ServerConnection) -> None:
            connections.append(ws)
            ready.set()
            await ws.wait_closed()

        async with running(handler) as server:
            client = await portside.connect(url(server))
            await ready.wait()
            (ws,) = connections
            epoch = hub.backend.epoch  # type: ignore[attr-defined]
            first = hub.subscribe(ws, "t", since=Position(epoch, 0))
            # Again while the first replay waits: it replaces the first.
            second = hub.subscribe(ws, "t", since=Position(epoch, 0))
            assert hub.subscribe(ws, "t") is second
            await asyncio.sleep(0)
            assert first.cancelled() or not first.done()
            hub.unsubscribe(ws, "t")
            backend.gate.set()
            with pytest.raises(asyncio.CancelledError):
                await second
            assert hub.topics(ws) == frozenset()
            await client.close()


async def test_topic_gap_while_a_subscriber_lags() -> None:
    backend = LossyBackend()
    async with Hub(backend) as hub:

        async def handler(ws: portside.ServerConnection) -> None:
            small_buffers(ws)
            await hub.subscribe(ws, "t")
            await ws.wait_closed()

        async with running(handler, write_limit=8192) as server:
            slow = await stalled_client(server, "t")
            while hub.metrics.skipped == 0:
                await hub.publish("t", "x" * 2000)
                await asyncio.sleep(0)
            backend.drop = 1
            await hub.publish("t", "lost")
            await hub.publish("t", "after")
            await asyncio.sleep(0)
            slow.transport.resume_reading()
            reasons: list[str] = []
            while len(reasons) < 2:
                frame = await receive_json(slow)
                if frame["type"] == "gap":
                    reasons.append(frame["reason"])
            assert sorted(reasons) == ["backend", "slow"]
            await slow.close()
