"""The acceptance criteria of the hub (issue 17), with real processes and a real Redis.

``portside serve tests.hub.acceptance_app:app --workers 2`` and a redis-server of
the test's own; clients over loopback. These tests take seconds each (1,000
clients, 1,000 messages; a Redis restart; timed runs): they are marked ``slow``
and run once in ``make test``, not again with the pure-Python code, each in an
event loop of its own with a timeout of minutes rather than conftest's 30 s.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import time
from typing import Any

import pytest

import portside
from portside.hub import Hub, RedisBackend
from tests.hub.redis_server import REASON, REDIS_SERVER, redis_server
from tests.hub.serving import Served, publishers, run_slow, served, subscriber, subscribers
from tests.needs import needs

pytestmark = [needs(REDIS_SERVER, REASON), pytest.mark.slow]


def check_order(result: dict[str, Any]) -> None:
    assert result["in_order"], "messages of a publisher out of order"


def gap_count(result: dict[str, Any]) -> int:
    return sum(gap["count"] for gap in result["gaps"])


def test_two_workers_1000_clients_1000_messages_all_in_order() -> None:
    run_slow(two_workers_1000_clients_1000_messages(), timeout=180)


async def two_workers_1000_clients_1000_messages() -> None:
    async with redis_server() as redis, served({"REDIS_URL": redis.url}) as server:
        url = f"ws://{server.host}:{server.port}/sub"
        # Two processes of 500 subscribers each: a million messages to read.
        async with subscribers(url, 500, 1000) as first, subscribers(url, 500, 1000) as second:
            per_worker = collections.Counter(first.pids) + collections.Counter(second.pids)
            assert len(per_worker) == 2, per_worker
            assert min(per_worker.values()) >= 300, per_worker  # spread by the kernel
            one, two = await publishers(server)

            async def publish(connection: portside.ClientConnection, name: str) -> None:
                # One after the other, in order; the answers are read afterwards.
                for seq in range(500):
                    await connection.send(f"{name}:{seq}")
                for _ in range(500):
                    assert "offset" in json.loads(await connection.recv())

            await asyncio.gather(publish(one, "one"), publish(two, "two"))
            results = (await first.results())[0] + (await second.results())[0]
        assert len(results) == 1000
        expected = [f"one:{seq}" for seq in range(500)]
        for result in results:
            assert result["gaps"] == []
            check_order(result)
            assert len(result["received"]) == 1000
            assert [data for data in result["received"] if data.startswith("one:")] == expected
        await one.close()
        await two.close()


async def publish_until(
    connection: portside.ClientConnection, name: str, stop: asyncio.Event, log: dict[str, set[str]]
) -> None:
    """Publish ``name:0``, ``name:1``... until ``stop``; sort them as acked, failed, uncertain."""
    seq = 0
    while not stop.is_set():
        message = f"{name}:{seq}"
        await connection.send(message)
        reply = json.loads(await connection.recv())
        if "offset" in reply:
            log["acked"].add(message)
        elif reply["maybe"]:
            log["uncertain"].add(message)
        else:
            log["failed"].add(message)
        seq += 1
        await asyncio.sleep(0.002)  # pace the load: ~300 messages/s per publisher


async def acked(log: dict[str, set[str]], name: str, count: int) -> None:
    while sum(message.startswith(name + ":") for message in log["acked"]) < count:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("history", [1000, 0], ids=["history", "no-history"])
def test_redis_restart_mid_run(history: int) -> None:
    run_slow(redis_restart_mid_run(history), timeout=120)


async def redis_restart_mid_run(history: int) -> None:
    env = {
        "HUB_HISTORY": str(history),
        "HUB_ON_OUTAGE": "queue" if history else "raise",
        # Long enough that the test publishes before the workers are back.
        "HUB_RECONNECT_MIN": "0.6",
    }
    async with redis_server() as redis:
        async with served({"REDIS_URL": redis.url, **env}) as server:
            url = f"ws://{server.host}:{server.port}/sub"
            async with subscribers(url, 100) as group:
                assert len(group.pids) == 2, group.pids
                log: dict[str, set[str]] = collections.defaultdict(set)
                stop = asyncio.Event()
                one, two = await publishers(server)
                publishing = [
                    asyncio.create_task(publish_until(one, "one", stop, log)),
                    asyncio.create_task(publish_until(two, "two", stop, log)),
                ]
                await acked(log, "one", 50)
                await acked(log, "two", 50)

                await redis.stop()
                await server.wait_for("Redis unreachable", 2)
                await redis.start()
                # Published by a third process before the workers reconnect: every
                # subscriber misses these unless history gives them back.
                # Every publisher of a topic keeps the same history.
                async with Hub(RedisBackend(redis.url), history=history) as outsider:
                    await outsider.wait_ready()
                    for seq in range(20):
                        await outsider.publish("t", f"outsider:{seq}")
                        log["acked"].add(f"outsider:{seq}")
                    await server.wait_for("Redis reachable again", 2)
                    await acked(log, "one", 100)
                    await acked(log, "two", 100)
                    stop.set()
                    await asyncio.gather(*publishing)
                    await outsider.publish("t", "END")
                results, _ = await group.results()

            assert len(results) == 100
            for result in results:
                check_order(result)
                received = set(result["received"])
                if history:
                    # Nothing missed: every acknowledged message arrived.
                    assert result["gaps"] == [], (result["gaps"], server.lines[-20:])
                    assert log["acked"] <= received
                else:
                    # Told of every message it missed, with the right count.
                    assert result["gaps"]
                    assert all(gap["reason"] == "backend" for gap in result["gaps"])
                    assert any(gap["epoch_changed"] for gap in result["gaps"])
                    told = len(received) + gap_count(result)
                    assert len(log["acked"]) <= told <= len(log["acked"]) + len(log["uncertain"])
                    assert received <= log["acked"] | log["uncertain"]
            # The logs and the metrics show it.
            assert server.count("Redis unreachable") == 2
            assert server.count("Redis reachable again") == 2
            if history:
                assert server.count(r"recovered \d+ of \d+ missed messages") >= 2
            else:
                assert server.count(r"messages lost") >= 2
            wanted = "portside_hub_recovered_total" if history else "portside_hub_lost_total"
            # Each worker copies its counters on its own second: wait for both.
            expected: dict[str, float] = {wanted: 40, "portside_hub_redis_reconnects_total": 2}
            if not history:
                expected["portside_hub_gaps_total"] = 100
            await eventually_metrics(server, expected)
            await one.close()
            await two.close()


async def eventually_metrics(server: Served, at_least: dict[str, float]) -> None:
    """The workers copy their counters every second: read until each got to its minimum."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        metrics = await server.metrics()
        short = {
            name: metrics.get(name) for name, low in at_least.items() if metrics.get(name, 0) < low
        }
        if not short:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"after 10 s: {short}, expected at least {at_least}")
        await asyncio.sleep(0.1)


async def stalled(server: Served) -> portside.ClientConnection:
    """A subscriber that stops reading at once, with a small receive buffer."""
    sock = socket.create_connection((server.host, server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client, _ = await subscriber(
        server, path="/sub/stalled", sock=sock, max_queue=1, ping_interval=None
    )
    client.transport.pause_reading()
    return client


def cpu_seconds(pid: int) -> float:
    """User and system time of process ``pid`` so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed_delivery(
    server: Served, clients: int, messages: int, slow: bool
) -> tuple[float, float]:
    """Wall and worker CPU seconds until ``clients`` subscribers got a burst of ``messages``."""
    url = f"ws://{server.host}:{server.port}/sub"
    async with subscribers(url, clients, messages) as group:
        (worker,) = group.pids
        slow_client = await stalled(server) if slow else None
        (publisher,) = await publishers(server, 1)
        payload = "x" * 200
        cpu = cpu_seconds(int(worker))
        start = time.monotonic()
        for seq in range(messages):
            await publisher.send(f"p:{seq}:{payload}")
        results, done = await group.results()
        cpu = cpu_seconds(int(worker)) - cpu
    for _ in range(messages):
        assert "offset" in json.loads(await publisher.recv())
    await publisher.close()
    for result in results:
        assert result["gaps"] == []
        check_order(result)
    if slow_client is not None:
        # It reads again: what it got, then how many it missed.
        slow_client.transport.resume_reading()
        got = gaps = 0
        while got + gaps < messages:
            frame = json.loads(await asyncio.wait_for(slow_client.recv(), 10))
            if frame["type"] == "gap":
                assert frame["reason"] == "slow"
                gaps += frame["count"]
            else:
                got += 1
        assert gaps > 0
        await slow_client.close()
    return done - start, cpu


def test_slow_consumer_does_not_slow_the_others() -> None:
    run_slow(slow_consumer_does_not_slow_the_others(), timeout=360)


async def slow_consumer_does_not_slow_the_others() -> None:
    # One worker, so that the slow subscriber shares it with all the others;
    # it alone has a small backlog (/sub/stalled), which it fills quickly. The
    # others have room for a whole burst, even when their process is slow to
    # read: none of them is skipped.
    async with (
        redis_server() as redis,
        served({"REDIS_URL": redis.url}, workers=1) as server,
    ):
        # The others get every message in order (timed_delivery checks it)
        # while the stalled subscriber reads nothing: nothing waits for it. What
        # it costs them is the worker's work to deliver: its CPU time. Other
        # load on the machine only ever adds to it (and to wall time, far more:
        # those are in the message, for information), so the least of each
        # side's runs is the one to compare, as timeit does; ABBA ABBA, so that
        # a drift weighs the same on both sides. On a machine shared with other
        # work even that moves by more than 10 %: up to three measurements.
        attempts = []
        for _ in range(3):
            without: list[tuple[float, float]] = []
            with_slow: list[tuple[float, float]] = []
            for slow in (False, True, True, False, False, True, True, False):
                (with_slow if slow else without).append(
                    await timed_delivery(server, 100, 1000, slow=slow)
                )
            cpu = min(run[1] for run in with_slow) / min(run[1] for run in without)
            attempts.append((cpu, without, with_slow))
            if cpu <= 1.10:
                break
        assert attempts[-1][0] <= 1.10, attempts
        # Each stalled subscriber was told at least once; its skips were counted.
        await eventually_metrics(
            server, {"portside_hub_gaps_total": 4, "portside_hub_skipped_total": 4}
        )
