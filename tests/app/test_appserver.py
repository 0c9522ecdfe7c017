"""One process's server: endpoints chained after process_request, readiness, metrics,
access log, drain order, hooks; in this process, over real loopback sockets."""

from __future__ import annotations

import asyncio
import http
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import portside
from portside.app.appserver import AppServer, DrainSettings, StartupError, failure_reason
from portside.app.config import Endpoints, build, defaults
from portside.app.health import is_endpoint
from tests.asyncio.helpers import Stubborn
from tests.programs import send_raw


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    sock.setblocking(False)
    return sock


ENDPOINTS = Endpoints("/healthz", "/readyz", "/metrics")


@asynccontextmanager
async def app_server(app: portside.App, **kwargs: Any) -> AsyncIterator[tuple[AppServer, str]]:
    values = {**defaults(), "app": "m:a", "ping_interval": None}
    limits = build(values, {"ping_interval"}).limits
    kwargs.setdefault("endpoints", ENDPOINTS)
    kwargs.setdefault("drain", DrainSettings(5.0, 0.0))
    server = AppServer(app, limits=limits, **kwargs)
    sock = listening()
    await server.start([sock])
    try:
        yield server, f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.drain()
        await server.wait_closed()
        await server.shutdown()


async def send(address: str, request: str) -> tuple[int, bytes, bytes]:
    """Send ``request`` to ``address`` (``host:port``); return (status, head, body)."""
    host, port = address.split(":")
    data = await send_raw(host, int(port), request.encode())
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


async def get(address: str, path: str, method: str = "GET") -> tuple[int, bytes, bytes]:
    return await send(address, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n")


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_health_and_readiness_answer_and_the_app_comes_first() -> None:
    def mine(connection: Any, request: portside.Request) -> Any:
        if request.path == "/readyz":
            return connection.respond(http.HTTPStatus.IM_A_TEAPOT, "mine\n")
        return None

    async with app_server(portside.App(echo)) as (_, address):
        assert await get(address, "/healthz") == (200, (await get(address, "/healthz"))[1], b"OK\n")
        status, _, body = await get(address, "/readyz?verbose")
        assert (status, body) == (200, b"ready\n")
        # Not GET: not portside's business; the handshake code answers 405.
        assert (await get(address, "/healthz", "POST"))[0] == 405
    async with app_server(portside.App(echo, process_request=mine)) as (_, address):
        assert (await get(address, "/readyz"))[0] == 418
        assert (await get(address, "/healthz"))[0] == 200
    # The older (path, headers) form too.
    legacy = portside.App(echo, process_request=lambda path, request_headers: None)
    async with app_server(legacy) as (_, address):
        assert (await get(address, "/healthz"))[0] == 200


async def test_endpoints_answer_http10_checks() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def http10(address: str, path: str) -> tuple[int, bytes, bytes]:
        # As HAProxy's default option httpchk sends it: no Host header.
        return await send(address, f"GET {path} HTTP/1.0\r\n\r\n")

    async with app_server(portside.App(echo), metrics=True) as (server, address):
        status, head, body = await http10(address, "/healthz")
        assert (status, body) == (200, b"OK\n")
        assert b"Connection: close" in head
        assert (await http10(address, "/readyz"))[0] == 200
        # Anything else over HTTP/1.0 is a WebSocket handshake, which needs 1.1.
        assert (await http10(address, "/chat"))[0] == 505
        status, head, body = await http10(address, "/metrics")
        assert status == 200
        assert b"Connection: close" in head
        assert b"Transfer-Encoding" not in head
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        # The health checks are not failed handshakes; the refused upgrade is.
        failures = {k: v for k, v in samples.items() if k[0] == "portside_handshake_failures_total"}
        assert failures == {
            ("portside_handshake_failures_total", (("reason", "invalid_protocol"),)): 1
        }
        # Draining: a check made now (a client that connected just before
        # accepting stopped) is answered too.
        server.drain()
        status, _, body = await http10(address, "/readyz")
        assert (status, body.startswith(b"not ready")) == (503, True)


async def test_readiness_checks() -> None:
    state = {"redis": False}
    app = portside.App(echo)
    app.add_readiness_check(lambda: state["redis"], name="redis")

    async def slow() -> bool:
        await asyncio.sleep(5)
        return True

    async with app_server(app) as (server, address):
        status, _, body = await get(address, "/readyz")
        assert (status, body) == (503, b"not ready: redis\n")
        state["redis"] = True
        assert (await get(address, "/readyz"))[0] == 200

        async def fine() -> bool:
            return True

        def broken() -> bool:
            raise RuntimeError("no route")

        app.add_readiness_check(fine)
        app.add_readiness_check(broken)
        status, _, body = await get(address, "/readyz")
        assert body == b"not ready: broken: RuntimeError: no route\n"
        app.readiness_checks.pop()
        app.add_readiness_check(slow, name="slow")
        status, _, body = await get(address, "/readyz")
        assert body == b"not ready: slow: no answer within 1 s\n"
        app.readiness_checks.pop()
        # Draining: not ready, before anything else happens.
        server.drain()
        assert server.readiness.accepting is False
        assert await server.readiness.failing() == [
            "not accepting connections (starting or draining)"
        ]


async def test_drain_closes_with_the_code_given_and_hooks_run() -> None:
    events: list[str] = []
    app = portside.App(echo)

    @app.on_startup
    async def first() -> None:
        events.append("start 1")

    def plain() -> Any:  # a hook may be a plain function, too
        events.append("start 2")

    app.on_startup(plain)

    @app.on_shutdown
    async def last() -> None:
        events.append("stop 1")

    @app.on_shutdown
    async def broken() -> None:
        raise RuntimeError("shutdown bug")

    async with app_server(app) as (server, address):
        assert events == ["start 1", "start 2"]
        ws = await portside.connect(f"ws://{address}/")
        server.drain(1012, "restart")
        server.drain(1001)  # ignored: already draining
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (1012, "restart")
    assert events == ["start 1", "start 2", "stop 1"]


async def test_a_startup_hook_that_raises() -> None:
    app = portside.App(echo)

    @app.on_startup
    async def boom() -> None:
        raise ValueError("bad")

    server = AppServer(
        app,
        limits=build({**defaults(), "app": "m:a"}).limits,
        endpoints=ENDPOINTS,
        drain=DrainSettings(1, 0),
    )
    sock = listening()
    with pytest.raises(StartupError, match=r"startup hook .*boom failed: ValueError: bad"):
        await server.start([sock])
    sock.close()
    await server.shutdown()  # nothing: the startup did not complete


async def test_serving_fails_cleanly() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server = AppServer(
        portside.App(echo),
        limits=build({**defaults(), "app": "m:a"}).limits,
        endpoints=ENDPOINTS,
        drain=DrainSettings(1, 0),
    )
    with pytest.raises(StartupError, match="cannot serve"):
        await server.start([sock])
    sock.close()


async def test_stop_now_cancels_handlers() -> None:
    stubborn = Stubborn()
    async with app_server(portside.App(stubborn), drain=DrainSettings(60, 0)) as (server, address):
        ws = await portside.connect(f"ws://{address}/")
        server.drain()
        await ws.wait_closed()
        server.stop_now()
        await stubborn.cancelled.wait()


async def test_app_options_and_explicit_settings() -> None:
    app = portside.App(echo, max_size=10, subprotocols=["chat"], max_connections=1)
    values = {**defaults(), "app": "m:a", "max_queue": 3}
    config = build(values, {"max_queue"})
    server = AppServer(app, limits=config.limits, endpoints=ENDPOINTS, drain=DrainSettings(1, 0))
    options = server.serve_options()
    assert options["max_size"] == 10  # the App's
    assert options["max_queue"] == 3  # explicit
    assert options["subprotocols"] == ["chat"]
    assert options["max_connections"] == 1
    config = build({**values, "max_connections": 5}, {"max_connections"})
    server = AppServer(app, limits=config.limits, endpoints=ENDPOINTS, drain=DrainSettings(1, 0))
    assert server.serve_options()["max_connections"] == 5


async def test_metrics_in_one_process() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def crash(ws: portside.ServerConnection) -> None:
        await ws.recv()
        raise RuntimeError("handler bug")

    async with app_server(portside.App(crash), metrics=True) as (server, address):
        for _ in range(3):
            async with portside.connect(f"ws://{address}/") as ws:
                await ws.send("x")
                await ws.wait_closed()
        # A refused handshake: not a WebSocket request.
        assert (await get(address, "/chat"))[0] == 426
        status, head, body = await get(address, "/metrics")
        assert status == 200
        assert b"Content-Type: text/plain; version=" in head
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("portside_connections_total", ())] == 3
        assert samples[("portside_handler_exceptions_total", ())] == 3
        assert samples[("portside_close_codes_sent_total", (("code", "1011"),))] == 3
        assert samples[("portside_handshake_failures_total", (("reason", "invalid_upgrade"),))] == 1
        assert ("portside_connections_open", ()) in samples
        assert server.served == 3


async def test_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.access")
    async with app_server(portside.App(echo), access_log=True) as (_, address):
        async with portside.connect(f"ws://{address}/room?x=1") as ws:
            await ws.send("hello")
            await ws.recv()
        await get(address, "/healthz")  # not logged
        await get(address, "/plain")  # refused: logged with its status
        host, port = address.split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.close()  # no request: not logged
        await writer.wait_closed()
        await asyncio.sleep(0)
    lines = [r.getMessage() for r in caplog.records if r.name == "portside.access"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("peer=127.0.0.1:")
    assert ' path="/room?x=1" status=101 duration=' in lines[0]
    assert ' subprotocol=- close_code=1000 close_reason="" close_code_sent=1000 ' in lines[0]
    # "hello" (11 bytes masked) and Close (8) in; the echo (7) and Close (4) out.
    assert lines[0].endswith(" messages_in=1 messages_out=1 bytes_in=19 bytes_out=11")
    assert "path=/plain status=426" in lines[1]


async def test_access_log_as_json(caplog: pytest.LogCaptureFixture) -> None:
    from portside.app.logs import JSONFormatter

    caplog.set_level(logging.INFO, "portside.access")

    async def crash(ws: portside.ServerConnection) -> None:
        raise RuntimeError("oops")

    async with app_server(portside.App(crash), access_log=True, json_logs=True) as (_, address):
        async with portside.connect(f"ws://{address}/") as ws:
            await ws.wait_closed()
    (record,) = [r for r in caplog.records if r.name == "portside.access"]
    entry = json.loads(JSONFormatter().format(record))
    assert entry["message"] == "connection"
    assert entry["status"] == 101
    assert entry["close_code_sent"] == 1011
    assert entry["error"] == "RuntimeError"
    assert entry["level"] == "info"


def test_failure_reasons() -> None:
    class Fake:
        def __init__(self, status: int | None, path: str = "/", closing: bool = False) -> None:
            self.response = (
                None if status is None else portside.Response(status, "", portside.Headers(), b"")
            )
            self.request = portside.Request(path, portside.Headers())
            self.protocol = type("P", (), {"handshake_exc": None})()
            self.server = type("S", (), {"closing": closing})()

    def reason(*args: Any, **kwargs: Any) -> str | None:
        return failure_reason(Fake(*args, **kwargs), ENDPOINTS)  # type: ignore[arg-type]

    assert reason(None) is None
    assert reason(101) is None
    assert reason(200, "/healthz") is None
    assert reason(503, closing=True) == "shutting_down"
    over = Fake(503)
    assert over.response is not None
    over.response.headers["Retry-After"] = "5"
    assert failure_reason(over, ENDPOINTS) == "over_capacity"  # type: ignore[arg-type]
    assert reason(503) == "http_503"
    assert reason(401) == "http_401"
    assert is_endpoint(ENDPOINTS, "/metrics?x")
    assert not is_endpoint(ENDPOINTS, "/chat")
