"""Two hosts, one Redis: a message published on one host reaches the other's subscribers.

Each "host" is a ``portside serve`` of its own. Where the machine allows it (root,
iproute2), each runs in a network namespace of its own, linked to this one by a
veth pair, with addresses of 198.18.0.0/15 (the range set aside for testing
networks); Redis listens on this side of both links. Otherwise the two instances
listen on two loopback addresses. The test records which (``hosts`` property,
and a line on stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

import portside
from tests.hub.redis_server import REASON, REDIS_SERVER, RedisServer, free_port
from tests.hub.serving import APP, Served, run_slow
from tests.needs import needs

pytestmark = [needs(REDIS_SERVER, REASON), pytest.mark.slow]

IP = shutil.which("ip")


def ip(*args: str) -> None:
    assert IP is not None
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespaces() -> Iterator[list[tuple[str, str, str]] | None]:
    """Two namespaces, each linked to this one: ``(name, host side, namespace side)``.

    ``None`` when the machine does not allow it (not root, no iproute2, no netns).
    """
    if IP is None or os.geteuid() != 0:
        yield None
        return
    tag = f"{os.getpid() % 100000}"
    made: list[str] = []
    links: list[tuple[str, str, str]] = []
    try:
        for index, side in enumerate("ab", start=1):
            name = f"psh{tag}{side}"
            host_if, ns_if = f"psh{tag}{side}h", f"psh{tag}{side}n"
            try:
                ip("netns", "add", name)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                yield None
                return
            made.append(name)
            ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", ns_if, "netns", name)
            host_address, ns_address = f"198.18.{index}.1", f"198.18.{index}.2"
            ip("addr", "add", f"{host_address}/24", "dev", host_if)
            ip("link", "set", host_if, "up")
            ip("-n", name, "addr", "add", f"{ns_address}/24", "dev", ns_if)
            ip("-n", name, "link", "set", ns_if, "up")
            ip("-n", name, "link", "set", "lo", "up")
            links.append((name, host_address, ns_address))
        yield links
    finally:
        for name in made:
            # Deleting the namespace deletes its end of the veth, and so the pair.
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                ip("netns", "del", name)


def test_two_hosts_one_redis(record_property: Callable[[str, object], None]) -> None:
    with namespaces() as links:
        mode = "network namespaces" if links else "two loopback addresses"
        record_property("hosts", mode)
        print(f"cross-host test: two portside serve instances in {mode}")
        run_slow(two_hosts(links), timeout=120)


async def two_hosts(links: list[tuple[str, str, str]] | None) -> None:
    port = free_port()
    if links:
        (name_a, redis_a, host_a), (name_b, redis_b, host_b) = links
        redis = RedisServer(f"{redis_a} {redis_b}", port, password=secrets.token_hex(8))
        prefixes = (["ip", "netns", "exec", name_a], ["ip", "netns", "exec", name_b])
        urls = tuple(
            f"redis://:{redis.password}@{address}:{port}/0" for address in (redis_a, redis_b)
        )
    else:
        host_a, host_b = "127.0.0.2", "127.0.0.3"
        redis = RedisServer("127.0.0.1", port)
        prefixes = ([], [])
        urls = (redis.url, redis.url)
    await redis.start()
    # In namespaces every port is free (each has its own stack): Redis's + 1.
    servers = [
        Served(APP, workers=1, host=host, port=port + 1 if links else free_port(host))
        for host in (host_a, host_b)
    ]
    try:
        for server, prefix, url in zip(servers, prefixes, urls, strict=True):
            await server.start({"REDIS_URL": url}, prefix)
        clients = []
        for server in servers:
            client = await portside.connect(f"ws://{server.host}:{server.port}/sub")
            assert json.loads(await client.recv())["type"] == "worker"
            assert json.loads(await client.recv())["type"] == "subscribed"
            clients.append(client)
        for index, server in enumerate(servers):
            publisher = await portside.connect(f"ws://{server.host}:{server.port}/pub")
            assert json.loads(await publisher.recv())["type"] == "worker"
            await publisher.send(f"from host {index}")
            assert "offset" in json.loads(await publisher.recv())
            for client in clients:
                frame = json.loads(await asyncio.wait_for(client.recv(), 10))
                assert frame["data"] == f"from host {index}"
            await publisher.close()
        for client in clients:
            await client.close()
    finally:
        for server in servers:
            await server.stop()
        await redis.stop()
        redis.cleanup()
