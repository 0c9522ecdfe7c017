"""The Redis backend against a real redis-server, started, restarted and stopped by each test.

Two hubs in one process stand for two workers: each has its own backend, so its
own pub/sub connection. The tests in tests/hub/test_acceptance.py use real worker
processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

import portside
from portside.hub import BackendUnavailable, Gap, Hub, HubClosed, Position, RedisBackend
from portside.hub.backends.redis import client_from_url
from tests.hub.helpers import hub_server, receive_json, subscriber
from tests.hub.redis_server import REASON, REDIS_SERVER, RedisServer, redis_server
from tests.needs import needs

pytestmark = needs(REDIS_SERVER, REASON)

FAST: dict[str, Any] = {"reconnect_min": 0.02, "reconnect_max": 0.2}


@asynccontextmanager
async def hubs(url: str, count: int = 2, **kwargs: Any) -> AsyncIterator[list[Hub]]:
    backend_kwargs = {
        key: kwargs.pop(key)
        for key in list(kwargs)
        if key in ("on_outage", "max_queued", "queue_timeout", "key_ttl", "prefix")
    }
    backend_kwargs = {**FAST, **backend_kwargs}
    started = [Hub(RedisBackend(url, **backend_kwargs), **kwargs) for _ in range(count)]
    try:
        for hub in started:
            await hub.start()
        yield started
    finally:
        for hub in started:
            await hub.close()


def gate_reconnection(hub: Hub) -> asyncio.Event:
    """Hold ``hub``'s backend back from reconnecting until the event is set."""
    backend = hub.backend
    assert isinstance(backend, RedisBackend)
    gate = asyncio.Event()
    connect: Callable[[], Awaitable[None]] = backend._connect_and_listen

    async def gated() -> None:
        await gate.wait()
        await connect()

    backend._connect_and_listen = gated  # type: ignore[method-assign]
    return gate


async def unready(hub: Hub) -> None:
    """Wait until ``hub``'s backend says it is unavailable."""
    if not hub.ready:
        return
    event = asyncio.Event()
    on_state = hub.on_state

    def watch(available: bool, error: BaseException | None) -> None:
        on_state(available, error)
        if not available:
            event.set()

    hub.on_state = watch  # type: ignore[method-assign]
    try:
        await event.wait()
    finally:
        del hub.on_state


async def queued(hub: Hub, count: int) -> None:
    """Wait until ``count`` messages wait in ``hub``'s queue: the publishers' tasks ran."""
    for _ in range(100):
        if hub.stats()["publish_queued"] == count:
            return
        await asyncio.sleep(0)  # let them run; no time passes
    raise AssertionError(f"{hub.stats()['publish_queued']} queued, not {count}")


async def test_messages_cross_workers_in_order() -> None:
    async with redis_server() as redis, hubs(redis.url) as (one, two):
        async with hub_server(one) as server_one, hub_server(two) as server_two:
            a, _ = await subscriber(server_one, "t")
            b, _ = await subscriber(server_two, "t")
            for n in range(10):
                await (one if n % 2 else two).publish("t", f"m{n}")
            await two.publish("t", b"\x00\x01")
            for client in (a, b):
                frames = [await receive_json(client) for _ in range(11)]
                assert [frame["offset"] for frame in frames] == list(range(1, 12))
                assert [frame["data"] for frame in frames[:10]] == [f"m{n}" for n in range(10)]
                assert frames[10]["encoding"] == "base64"
            # A subscriber publishing through its connection.
            await a.send("from a")
            for client in (a, b):
                assert (await receive_json(client))["data"] == "from a"
            await a.close()
            await b.close()


async def test_one_pubsub_connection_per_worker_whatever_the_topics() -> None:
    async with redis_server() as redis, hubs(redis.url) as (one, two):
        async with hub_server(one) as server_one, hub_server(two) as server_two:
            clients = []
            for n in range(40):
                server = server_one if n % 2 else server_two
                client, _ = await subscriber(server, f"topic:{n % 10}")
                clients.append(client)
            admin = aioredis.Redis.from_url(redis.url)
            listing = (
                await admin.execute_command(  # type: ignore[no-untyped-call]
                    "CLIENT", "LIST"
                )
            ).decode()
            subscribed = [
                line for line in listing.splitlines() if " sub=0 " not in line and " sub=" in line
            ]
            assert len(subscribed) == 2, listing
            assert all(" sub=5 " in line for line in subscribed), listing
            await admin.aclose()
            for client in clients:
                await client.close()


async def test_binary_and_text_round_trip_raw() -> None:
    async with redis_server() as redis, hubs(redis.url, envelope=None) as (one, two):
        ready = asyncio.Event()

        async def handler(ws: portside.ServerConnection) -> None:
            await two.subscribe(ws, "t")
            ready.set()
            await ws.wait_closed()

        async with hub_server(one), portside.serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = await portside.connect(f"ws://127.0.0.1:{port}")
            await ready.wait()
            await one.publish("t", "é\nline")
            await one.publish("t", b"\xff\x00\n")
            assert await client.recv() == "é\nline"
            assert await client.recv() == b"\xff\x00\n"
            await client.close()


async def test_lost_pubsub_connection_recovers_from_history() -> None:
    async with redis_server() as redis, hubs(redis.url, history=100) as (one, two):
        async with hub_server(two) as server:
            client, _ = await subscriber(server, "t")
            await one.publish("t", "1")
            assert (await receive_json(client))["data"] == "1"
            gate = gate_reconnection(two)
            admin = aioredis.Redis.from_url(redis.url)
            await admin.execute_command(  # type: ignore[no-untyped-call]
                "CLIENT", "KILL", "TYPE", "pubsub"
            )
            await unready(two)
            # Worker one reconnects on its own, and publishes while two is away.
            await one.wait_ready()
            for n in range(2, 7):
                await one.publish("t", str(n))
            gate.set()
            frames = [await receive_json(client) for _ in range(5)]
            assert [frame["data"] for frame in frames] == ["2", "3", "4", "5", "6"]
            assert two.metrics.recovered == 5
            assert two.metrics.lost == 0
            stats = two.stats()
            assert stats["redis_reconnects"] == 1
            assert stats["redis_up"] == 1
            await admin.aclose()
            await client.close()


async def test_redis_restart_with_history_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.hub")
    async with redis_server() as redis, hubs(redis.url, history=100) as (one, two):
        async with hub_server(two) as server:
            client, _ = await subscriber(server, "t")
            await one.publish("t", "before")
            old = await receive_json(client)
            gate = gate_reconnection(two)
            gate_one = gate_reconnection(one)
            await redis.restart()
            await unready(two)
            await unready(one)  # or it could publish before it saw the restart
            gate_one.set()
            await one.wait_ready()
            for n in range(3):
                await one.publish("t", f"after{n}")
            gate.set()
            frames = [await receive_json(client) for _ in range(3)]
            assert [frame["data"] for frame in frames] == ["after0", "after1", "after2"]
            assert [frame["offset"] for frame in frames] == [1, 2, 3]
            assert frames[0]["epoch"] != old["epoch"]
            assert two.metrics.recovered == 3
            assert two.metrics.epoch_changes == 1
            assert "Redis unreachable" in caplog.text
            assert "Redis reachable again" in caplog.text
            assert "recovered 3 of 3 missed messages" in caplog.text
            await client.close()


async def test_redis_restart_without_history_tells_the_gap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gaps: list[Gap] = []
    async with redis_server() as redis, hubs(redis.url, on_gap=gaps.append) as (one, two):
        async with hub_server(two) as server:
            clients = [(await subscriber(server, "t"))[0] for _ in range(3)]
            await one.publish("t", "before")
            for client in clients:
                await receive_json(client)
            gate = gate_reconnection(two)
            gate_one = gate_reconnection(one)
            await redis.restart()
            await unready(two)
            await unready(one)  # or it could publish before it saw the restart
            gate_one.set()
            await one.wait_ready()
            for n in range(4):
                await one.publish("t", f"missed{n}")
            gate.set()
            await two.wait_ready()
            await one.publish("t", "seen")
            for client in clients:
                gap = await receive_json(client)
                assert (gap["type"], gap["count"], gap["first"], gap["last"]) == ("gap", 4, 1, 4)
                assert gap["epoch_changed"] is True
                assert gap["reason"] == "backend"
                assert (await receive_json(client))["data"] == "seen"
            assert [gap.count for gap in gaps] == [4]
            assert two.metrics.lost == 4
            assert two.metrics.gaps == 3
            assert "4 messages lost" in caplog.text
            for client in clients:
                await client.close()


async def test_publishing_while_redis_is_away_raises(caplog: pytest.LogCaptureFixture) -> None:
    async with redis_server() as redis:
        async with hubs(redis.url, count=1) as (hub,):
            await hub.publish("t", "ok")
            await redis.stop()
            await unready(hub)
            with pytest.raises(BackendUnavailable, match=r"unreachable.*not published"):
                await hub.publish("t", "lost?")
            assert hub.metrics.publish_errors == 1
            assert hub.stats()["redis_up"] == 0
            assert hub.stats()["redis_outage_seconds"] > 0
            assert "publishing raises" in caplog.text
            await redis.start()
            await hub.wait_ready()
            assert (await hub.publish("t", "back")).offset == 1  # a new epoch


async def test_a_hub_starts_while_redis_is_away() -> None:
    redis = RedisServer()
    try:
        async with hubs(redis.url, count=1) as (hub,):
            assert not hub.ready
            with pytest.raises(BackendUnavailable):
                await hub.publish("t", "x")
            await redis.start()
            await hub.wait_ready()
            await hub.publish("t", "x")
    finally:
        await redis.stop()
        redis.cleanup()


async def test_publishing_while_redis_is_away_queues_in_order() -> None:
    async with redis_server() as redis:
        async with hubs(redis.url, on_outage="queue", max_queued=3) as (one, two):
            async with hub_server(two) as server:
                client, _ = await subscriber(server, "t")
                await redis.stop()
                await unready(one)
                publishes = [asyncio.create_task(one.publish("t", str(n))) for n in range(3)]
                await queued(one, 3)
                with pytest.raises(BackendUnavailable, match="3 messages wait already"):
                    await one.publish("t", "one too many")
                # Two must have seen the outage too, or wait_ready() below
                # would not wait for it to subscribe again.
                await unready(two)
                await redis.start()
                positions = await asyncio.gather(*publishes)
                assert [position.offset for position in positions] == [1, 2, 3]
                await two.wait_ready()
                await one.publish("t", "3")
                # Two may have subscribed again before, between or after they were
                # published: either way, the subscriber gets each of the four once,
                # in order, as a message or as a gap notice; never both.
                told: list[int] = []
                while not told or told[-1] < 4:
                    frame = await receive_json(client)
                    if frame["type"] == "gap":
                        told.extend(range(frame["first"], frame["last"] + 1))
                    else:
                        assert frame["data"] == str(frame["offset"] - 1), frame
                        told.append(frame["offset"])
                assert told == [1, 2, 3, 4]
                assert frame["type"] == "message"  # published once two was back
                await client.close()


async def test_a_message_published_while_the_hub_checks_the_position_is_no_gap() -> None:
    # After a reconnection, the hub reads the topic's position, then waits for
    # the answer to a PING: a message published in between reaches it before
    # that answer, and is delivered. The position read before it must not make
    # it missing, even when the epoch changed in between: after Redis restarted
    # empty, the topic has no epoch when read, and its first message starts one.
    gaps: list[Gap] = []
    async with redis_server() as redis, hubs(redis.url, count=1, on_gap=gaps.append) as (hub,):
        async with hub_server(hub) as server:
            client, _ = await subscriber(server, "t")
            await hub.publish("t", "old")
            old = await receive_json(client)
            backend = hub.backend
            assert isinstance(backend, RedisBackend)
            new: list[Position] = []
            pipeline = backend.client.pipeline

            def read_then_publish(*args: Any, **kwargs: Any) -> Any:
                pipe = pipeline(*args, **kwargs)
                execute = pipe.execute

                async def execute_then_publish() -> Any:
                    result = await execute()
                    if not new:  # the first read after the restart
                        new.append(await backend._publish_now("t", "new1", 0))
                    return result

                pipe.execute = execute_then_publish
                return pipe

            await redis.stop()
            await unready(hub)
            backend.client.pipeline = read_then_publish
            await redis.start()
            await hub.wait_ready()
            del backend.client.pipeline
            assert [position.offset for position in new] == [1]
            assert new[0].epoch != old["epoch"]
            await hub.publish("t", "new2")
            frames = [await receive_json(client) for _ in range(2)]
            assert [(frame["type"], frame.get("data")) for frame in frames] == [
                ("message", "new1"),
                ("message", "new2"),
            ]
            assert gaps == []
            assert hub.metrics.lost == 0
            assert hub.metrics.epoch_changes == 1
            await client.close()


async def test_queued_messages_time_out_and_fail_on_close() -> None:
    async with redis_server() as redis:
        async with hubs(redis.url, count=1, on_outage="queue", queue_timeout=0.05) as (hub,):
            await redis.stop()
            await unready(hub)
            with pytest.raises(BackendUnavailable, match="stayed unreachable"):
                await hub.publish("t", "late")
            assert hub.stats()["publish_queued"] == 0
        async with hubs(redis.url, count=1, on_outage="queue") as (hub,):
            waiting = asyncio.create_task(hub.publish("t", "never"))
            await queued(hub, 1)
            await hub.close()
            with pytest.raises(HubClosed, match="not published"):
                await waiting
            # A publisher that gives up withdraws its message.
        async with hubs(redis.url, count=1, on_outage="queue") as (hub,):
            waiting = asyncio.create_task(hub.publish("t", "cancelled"))
            await queued(hub, 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert hub.stats()["publish_queued"] == 0


async def test_subscribe_since_replays_from_the_stream() -> None:
    async with redis_server() as redis, hubs(redis.url, history=3) as (one, two):
        positions = [await one.publish("t", str(n)) for n in range(1, 6)]
        async with hub_server(two) as server:
            client, frames = await subscriber(server, "t", since=positions[0])
            gap, *replayed = frames["before"]
            assert (gap["type"], gap["first"], gap["last"], gap["reason"]) == (
                "gap",
                2,
                2,
                "history",
            )
            assert [frame["data"] for frame in replayed] == ["3", "4", "5"]
            assert frames["subscribed"]["offset"] == 5
            await client.close()
            client, frames = await subscriber(server, "t", since=positions[-1])
            assert frames["before"] == []
            await client.close()


async def test_a_new_redis_process_with_old_keys_starts_a_new_epoch() -> None:
    # As after a restart from a snapshot, or a failover: the keys are there,
    # written by another Redis process. Offsets may have gone back: new epoch.
    async with redis_server() as redis, hubs(redis.url, count=1, history=10) as (hub,):
        first = await hub.publish("t", "1")
        await hub.publish("t", "2")
        admin = aioredis.Redis.from_url(redis.url)
        await admin.hset("{portside:t}:meta", "run_id", "another-process")
        third = await hub.publish("t", "3")
        assert third.epoch != first.epoch
        assert third.offset == 1
        history = await hub.backend.history("t", Position(third.epoch, 0))
        assert [entry[1] for entry in history.entries] == ["3"]
        await admin.aclose()


async def test_history_is_trimmed_and_expires() -> None:
    setting = {"t": 2}
    async with (
        redis_server() as redis,
        hubs(redis.url, count=1, history=lambda topic: setting[topic], key_ttl=60) as (hub,),
    ):
        admin = aioredis.Redis.from_url(redis.url)
        for n in range(5):
            await hub.publish("t", str(n))
        assert await admin.xlen("{portside:t}:history") == 2
        assert 0 < await admin.pttl("{portside:t}:history") <= 60_000
        assert 0 < await admin.pttl("{portside:t}:meta") <= 60_000
        # A publisher without history leaves the stream alone, and a hole in it.
        setting["t"] = 0
        await hub.publish("t", "no history")
        assert await admin.xlen("{portside:t}:history") == 2
        assert (await hub.backend.head("t")).offset == 6
        assert (await hub.backend.head("never")) == Position("", 0)
        await admin.aclose()


async def test_prefix_separates_hubs() -> None:
    async with redis_server() as redis:
        async with (
            hubs(redis.url, count=1, prefix="a") as (a,),
            hubs(redis.url, count=1, prefix="b") as (b,),
            hub_server(b) as server,
        ):
            client, _ = await subscriber(server, "t")
            await a.publish("t", "for a")
            await b.publish("t", "for b")
            assert (await receive_json(client))["data"] == "for b"
            await client.close()


async def test_dead_connection_is_found_by_ping() -> None:
    async with redis_server() as redis:
        backend = RedisBackend(redis.url, ping_interval=0.05, ping_timeout=0.2, **FAST)
        async with Hub(backend) as hub:
            # Redis stops answering without closing anything.
            assert redis.process is not None
            redis.process.send_signal(19)  # SIGSTOP
            try:
                await unready(hub)
            finally:
                redis.process.send_signal(18)  # SIGCONT
            await hub.wait_ready()
            assert backend.reconnects == 1


async def test_sentinel_url() -> None:
    async with redis_server() as redis:
        sentinel = RedisServer()
        config = f"{sentinel.directory}/sentinel.conf"
        with open(config, "w") as file:
            file.write(
                f"port {sentinel.port}\nbind 127.0.0.1\n"
                f"sentinel monitor main 127.0.0.1 {redis.port} 1\n"
            )
        assert REDIS_SERVER is not None
        process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            config,
            "--sentinel",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            assert process.stdout is not None
            while b"+monitor" not in (line := await process.stdout.readline()):
                assert line, "redis-sentinel exited"
            url = f"redis+sentinel://127.0.0.1:{sentinel.port}/main/0"
            async with Hub(RedisBackend(url, **FAST), history=5) as hub:
                async with hub_server(hub) as server:
                    client, _ = await subscriber(server, "t")
                    await hub.publish("t", "through sentinel")
                    assert (await receive_json(client))["data"] == "through sentinel"
                    await client.close()
        finally:
            process.terminate()
            await process.wait()
            sentinel.cleanup()


def test_client_from_url_schemes() -> None:
    from redis.asyncio.cluster import RedisCluster

    client = client_from_url("redis://127.0.0.1:1/3")
    assert isinstance(client, aioredis.Redis)
    assert client.connection_pool.connection_kwargs["db"] == 3
    assert isinstance(client_from_url("unix:///tmp/redis.sock"), aioredis.Redis)
    cluster = client_from_url("redis+cluster://127.0.0.1:1")
    assert isinstance(cluster, RedisCluster)
    sentinel = client_from_url("rediss+sentinel://user:p%40ss@h1:1,[::1]:2,h3/main/2")
    kwargs = sentinel.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "p@ss", 2)
    hosts = [
        s.connection_pool.connection_kwargs["host"]
        for s in sentinel.connection_pool.sentinel_manager.sentinels
    ]
    assert hosts == ["h1", "::1", "h3"]
    with pytest.raises(ValueError, match="service"):
        client_from_url("redis+sentinel://h1:1")
    with pytest.raises(ValueError, match="scheme"):
        client_from_url("http://h1")


def test_bad_settings() -> None:
    for kwargs, match in (
        ({"on_outage": "drop"}, "on_outage"),
        ({"max_queued": 0}, "max_queued"),
        ({"max_queued": True}, "max_queued"),
        ({"reconnect_min": 0}, "reconnect_min"),
        ({"reconnect_min": 2, "reconnect_max": 1}, "reconnect_max"),
        ({"queue_timeout": 0}, "queue_timeout"),
        ({"key_ttl": -1}, "key_ttl"),
        ({"prefix": ""}, "prefix"),
    ):
        with pytest.raises(ValueError, match=match):
            RedisBackend("redis://127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisBackend(aioredis.Redis(decode_responses=True))


async def test_redis_restarted_from_an_older_snapshot_starts_a_new_epoch() -> None:
    async with redis_server() as redis, hubs(redis.url, history=10) as (one, two):
        async with hub_server(two) as server:
            client, _ = await subscriber(server, "t")
            for n in range(5):
                await one.publish("t", str(n))
            admin = aioredis.Redis.from_url(redis.url)
            await admin.save()  # the snapshot holds offsets 1-5
            await admin.aclose()
            for n in range(5, 8):
                old = await one.publish("t", str(n))
            for _ in range(8):
                await receive_json(client)
            # Restarted from the snapshot: offset 5, written by another process.
            # Held back, or a hub could be down and up again before unready() looks.
            gates = [gate_reconnection(one), gate_reconnection(two)]
            await redis.restart()
            await unready(one)
            await unready(two)
            for gate in gates:
                gate.set()
            await one.wait_ready()
            await two.wait_ready()
            position = await one.publish("t", "after")
            assert position.offset == 1
            assert position.epoch != old.epoch
            frame = await receive_json(client)
            assert (frame["data"], frame["offset"], frame["epoch"]) == ("after", 1, position.epoch)
            history = await one.backend.history("t", Position(old.epoch, 0))
            assert [payload for _, payload in history.entries] == ["after"]
            await client.close()
