"""Servers over real loopback sockets: handshake hooks, shutdown, options."""

from __future__ import annotations

import asyncio
import gc
import http
import logging
import math
import os
import pathlib
import re
import signal
import socket
import ssl
import tempfile
import threading
from typing import Any

import pytest

import portside
from portside.asyncio.server import (
    handler_takes_path,
    normalize_process_request,
    process_request_is_legacy,
)
from tests.asyncio.helpers import RawClient, Stubborn, echo, running, url
from tests.framing import client_frame, close_payload
from tests.programs import send_raw

CERT = pathlib.Path(__file__).with_name("localhost.pem")


async def send_to(server: portside.Server, data: bytes) -> bytes:
    """Send ``data`` as it is; return all the server sends until it closes."""
    host, port = server.sockets[0].getsockname()[:2]
    return await send_raw(host, port, data)


async def http_get(
    server: portside.Server, path: str, method: str = "GET"
) -> tuple[int, bytes, bytes]:
    """Plain HTTP request; return (status, head, body)."""
    host = server.sockets[0].getsockname()[0]
    data = await send_to(server, f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


# Handlers.


async def test_handler_with_path_gets_the_path() -> None:
    async def old_style(ws: portside.ServerConnection, path: str) -> None:
        await ws.send(path)

    async with running(old_style) as server, portside.connect(url(server, "/room/1?x=y")) as ws:
        assert await ws.recv() == "/room/1?x=y"


def test_handler_signatures() -> None:
    async def one(ws: object) -> None: ...
    async def two(ws: object, path: str) -> None: ...
    async def optional(ws: object, path: str = "") -> None: ...

    assert not handler_takes_path(one)
    assert handler_takes_path(two)
    assert not handler_takes_path(optional)


async def test_handler_exception_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def crash(ws: portside.ServerConnection) -> None:
        raise RuntimeError("bug in handler")

    async with running(crash) as server, portside.connect(url(server)) as ws:
        with pytest.raises(portside.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
    assert "connection handler failed" in caplog.text
    assert "bug in handler" in caplog.text


async def test_handler_returning_closes_with_1000() -> None:
    async def quick(ws: portside.ServerConnection) -> None:
        pass

    async with running(quick) as server, portside.connect(url(server)) as ws:
        with pytest.raises(portside.ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1000


async def test_the_handler_coroutine_is_the_task() -> None:
    # No coroutine of portside's wraps the handler: it would be resumed with it
    # on every message.
    seen: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def handler(ws: portside.ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.set_result(task.get_coro().cr_code is handler.__code__)  # type: ignore[union-attr]

    async with running(handler) as server, portside.connect(url(server)) as ws:
        assert await seen
        await ws.wait_closed()
        assert ws.close_code == 1000


async def test_handler_that_fails_when_called(caplog: pytest.LogCaptureFixture) -> None:
    # Two required parameters: called as handler(ws, path), which cannot bind.
    async def three(ws: portside.ServerConnection, path: str, extra: str) -> None: ...

    async with running(three) as server, portside.connect(url(server)) as ws:
        await ws.wait_closed()
        assert ws.close_code == 1011
    assert "connection handler failed" in caplog.text
    assert "extra" in caplog.text


async def test_a_handler_that_raised_does_not_keep_its_connection() -> None:
    # The task keeps the handler's exception, whose frames refer to the
    # connection: the connection must let go of the task.
    ended = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        try:
            await ws.recv()
        finally:
            ended.set()

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        async with running(handler) as server:
            raw = await RawClient.connect(server)
            raw.transport.abort()  # recv() raises ConnectionClosedError
            await ended.wait()
        # The server is closed: every handler has returned, every connection ended.
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, portside.ServerConnection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


class AwaitableEcho:
    """What a handler that is not a coroutine function may return."""

    def __init__(self, ws: portside.ServerConnection) -> None:
        self.ws = ws

    def __await__(self) -> Any:
        return echo(self.ws).__await__()


async def test_handler_that_returns_another_awaitable() -> None:
    async with running(AwaitableEcho) as server, portside.connect(url(server)) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"


async def test_handler_that_returns_no_awaitable(caplog: pytest.LogCaptureFixture) -> None:
    def plain(ws: portside.ServerConnection) -> None: ...

    async with running(plain) as server, portside.connect(url(server)) as ws:
        await ws.wait_closed()
        assert ws.close_code == 1011
    assert "can't be used in 'await' expression" in caplog.text


class Stop(BaseException):
    """Not an Exception: still a failed handler to the connection."""


async def test_handler_that_raises_a_base_exception(caplog: pytest.LogCaptureFixture) -> None:
    async def stop(ws: portside.ServerConnection) -> None:
        raise Stop("stopped")

    async with running(stop) as server, portside.connect(url(server)) as ws:
        await ws.wait_closed()
        assert ws.close_code == 1011
    assert "connection handler failed" in caplog.text
    assert "Stop: stopped" in caplog.text


# process_request and process_response.


def test_process_request_forms() -> None:
    def legacy(path: str, request_headers: portside.Headers) -> None: ...
    def legacy_annotated(p: str, h: Any) -> None: ...
    def new(connection: Any, request: Any) -> None: ...
    def ambiguous(a: Any, b: Any) -> None: ...

    assert process_request_is_legacy(legacy)
    assert process_request_is_legacy(legacy_annotated)
    assert not process_request_is_legacy(new)
    assert not process_request_is_legacy(ambiguous)


async def test_legacy_health_check_on_the_websocket_port() -> None:
    def health_check(path: str, request_headers: portside.Headers) -> Any:
        if path == "/health/":
            return http.HTTPStatus.OK, [], b"OK\n"
        return None

    async with running(process_request=health_check) as server:
        status, head, body = await http_get(server, "/health/")
        assert (status, body) == (200, b"OK\n")
        assert b"Content-Length: 3" in head
        async with portside.connect(url(server)) as ws:
            await ws.send("still a WebSocket server")
            assert await ws.recv() == "still a WebSocket server"


async def test_new_style_process_request() -> None:
    async def process_request(
        connection: portside.ServerConnection, request: portside.Request
    ) -> portside.Response | None:
        await asyncio.sleep(0)
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "healthy\n")
        if "X-Token" not in request.headers:
            return connection.respond(401, "no token\n")
        return None

    async with running(process_request=process_request) as server:
        assert (await http_get(server, "/healthz"))[::2] == (200, b"healthy\n")
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server))
        assert info.value.response.status_code == 401
        async with portside.connect(url(server), extra_headers={"X-Token": "t"}) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_process_request_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: Any, request: Any) -> None:
        raise ValueError("boom")

    async with running(process_request=broken) as server:
        status, _, body = await http_get(server, "/")
        assert status == 500
        assert b"See server log" in body
    assert "process_request failed" in caplog.text


async def test_process_request_with_a_wrong_return_type(caplog: pytest.LogCaptureFixture) -> None:
    def wrong(connection: Any, request: Any) -> str:
        return "nope"

    async with running(process_request=wrong) as server:
        assert (await http_get(server, "/"))[0] == 500
    assert "expected None, a Response or (status, headers, body)" in caplog.text


async def test_legacy_response_with_text_body_and_headers() -> None:
    def process_request(path: str, request_headers: portside.Headers) -> Any:
        return 404, {"X-Why": "gone", "Connection": "close", "Content-Length": "5"}, "gone\n"

    async with running(process_request=process_request) as server:
        status, head, body = await http_get(server, "/")
        assert (status, body) == (404, b"gone\n")
        assert b"X-Why: gone" in head


async def test_process_response_adds_a_header() -> None:
    def process_response(
        connection: portside.ServerConnection,
        request: portside.Request,
        response: portside.Response,
    ) -> None:
        response.headers["X-Served-By"] = "test"

    async with running(process_response=process_response) as server:
        async with portside.connect(url(server)) as ws:
            assert ws.response_headers["X-Served-By"] == "test"


async def test_process_response_replaces_the_response() -> None:
    async def process_response(connection: Any, request: Any, response: Any) -> portside.Response:
        return connection.respond(403, "no\n")  # type: ignore[no-any-return]

    async with running(process_response=process_response) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server))
        assert info.value.response.status_code == 403


async def test_process_response_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: Any, request: Any, response: Any) -> None:
        raise ValueError("boom")

    async with running(process_response=broken) as server:
        with pytest.raises(portside.InvalidStatus):
            await portside.connect(url(server))
    assert "process_response failed" in caplog.text


# Handshake failures.


async def test_plain_http_request_gets_426(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    async with running() as server:
        status, head, body = await http_get(server, "/")
        assert status == 426
        assert b"Upgrade: websocket" in head
        assert b"missing Upgrade header" in body
    assert "opening handshake failed" in caplog.text


async def test_other_methods_get_405() -> None:
    async with running() as server:
        assert (await http_get(server, "/", "POST"))[0] == 405


async def test_garbage_gets_400_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    async with running() as server:
        data = await send_to(server, b"\x16\x03\x01 not http\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert "invalid HTTP request" in caplog.text
    assert "Traceback" not in caplog.text


async def test_method_that_is_not_a_token_gets_400_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # RFC 9110 9.1: a method is a token (fuzzing/regressions/http/non-ascii-method).
    caplog.set_level(logging.INFO, "portside.server")
    async with running() as server:
        data = await send_to(server, b"G\xffT / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    lines = [r.getMessage() for r in caplog.records if "invalid request method" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "Traceback" not in caplog.text


async def until_no_connections(server: portside.Server) -> None:
    async def poll() -> None:
        while server.connections:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), 5)


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # a TCP probe: connect, close
        b"GET / HTTP/1.1\r\nHost: x\r\n",  # a request cut short
        b"\x16\x03\x01 not http\r\n\r\n",  # answered 400 by the parser
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # answered 426: not an upgrade
    ],
    ids=["nothing", "partial", "garbage", "not-an-upgrade"],
)
async def test_connections_without_handshake_are_forgotten(sent: bytes) -> None:
    # A hostile peer opening connections that never complete the handshake
    # must not leave anything behind.
    async with running() as server:
        host, port = server.sockets[0].getsockname()[:2]
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(sent)
            await writer.drain()
            while not server.connections:
                await asyncio.sleep(0.001)
            if sent.endswith(b"\r\n\r\n"):
                assert (await reader.read()).startswith(b"HTTP/1.1 4")
            writer.close()
            await writer.wait_closed()
            await until_no_connections(server)


async def test_origins() -> None:
    allowed = ["https://good.example", re.compile(r"https://.*\.trusted\.example")]
    async with running(origins=allowed) as server:
        async with portside.connect(url(server), origin="https://good.example"):
            pass
        async with portside.connect(url(server), origin="https://a.trusted.example"):
            pass
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server), origin="https://evil.example")
        assert info.value.response.status_code == 403


async def test_open_timeout_closes_slow_handshakes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    async with running(open_timeout=0.05) as server:
        raw = await RawClient.connect(server, handshake=False)
        raw.send(b"GET / HTTP/1.1\r\n")
        assert await raw.reader.read() == b""
        await raw.close()
    assert "opening handshake timed out" in caplog.text


async def test_open_timeout_frees_a_rejection_the_peer_does_not_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A refused request whose response is larger than the socket buffers, from
    # a peer that never reads: the transport would hold the rest of the body.
    caplog.set_level(logging.INFO, "portside.server")
    body = b"x" * (16 << 20)
    async with running(
        open_timeout=0.1, process_request=lambda ws, request: (404, [], body)
    ) as server:
        host, port = server.sockets[0].getsockname()[:2]
        loop = asyncio.get_running_loop()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

            async def timed_out() -> None:
                while "not read" not in caplog.text:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(timed_out(), 5)
            await until_no_connections(server)
    assert "HTTP 404 response not read within open_timeout" in caplog.text


async def test_open_timeout_spares_completed_handshakes() -> None:
    async with running(open_timeout=0.1) as server:
        slow = await RawClient.connect(server, handshake=False)
        slow.send(b"GET / HTTP/1.1\r\n")
        async with portside.connect(url(server)) as ws:
            assert await slow.reader.read() == b""  # cut by the sweep
            await slow.close()
            # The sweep that cut the slow one left the open connection alone.
            await ws.send("still here")
            assert await ws.recv() == "still here"
            assert not server._opening
    assert server._open_sweep is None


# Shutdown.


async def test_close_sends_1001_and_ends_async_for() -> None:
    ended = asyncio.Event()
    outcome: list[str] = []

    async def handler(ws: portside.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)
        outcome.append(f"loop ended, code {ws.close_code}")
        ended.set()

    server = await portside.serve(handler, "127.0.0.1", 0, ping_interval=None)
    ws = await portside.connect(url(server))
    await ws.send("hi")
    assert await ws.recv() == "hi"
    server.close()
    server.close()  # idempotent
    await server.wait_closed()
    assert ended.is_set()
    assert outcome == ["loop ended, code 1001"]
    with pytest.raises(portside.ConnectionClosedOK):
        await ws.recv()
    assert ws.close_code == 1001
    assert not server.is_serving()


async def test_close_answers_handshakes_in_progress_with_503() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_check(connection: Any, request: Any) -> None:
        entered.set()
        await release.wait()

    server = await portside.serve(echo, "127.0.0.1", 0, process_request=slow_check)
    partial = await RawClient.connect(server, handshake=False)
    partial.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    connecting = asyncio.ensure_future(portside.connect(url(server)))
    await entered.wait()
    server.close()
    release.set()
    with pytest.raises(portside.InvalidStatus) as info:
        await connecting
    assert info.value.response.status_code == 503
    assert (await partial.reader.read()).startswith(b"HTTP/1.1 503 Service Unavailable")
    await partial.close()
    await server.wait_closed()


@pytest.mark.parametrize("finish_handshakes", [False, True])
async def test_a_connection_accepted_as_the_server_closes_is_answered(
    finish_handshakes: bool,
) -> None:
    # asyncio accepts a connection in one turn of the loop and attaches it to
    # the server in the next; a close() in between used to leave it accepted
    # and never served (CPython gh-109564): the client waited forever. Closed
    # after each number of turns, the server answers every client (or resets
    # it): none waits.
    loop = asyncio.get_running_loop()
    for turns in range(4):
        async with running(echo) as server:
            client = socket.socket()
            client.setblocking(False)
            # On loopback the kernel completes the TCP handshake at once: the
            # server's socket is readable from the next turn on.
            client.connect_ex(server.sockets[0].getsockname())
            for _ in range(turns):
                await asyncio.sleep(0)
            server.close(finish_handshakes=finish_handshakes)
            with client:
                try:
                    await loop.sock_sendall(client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = await asyncio.wait_for(loop.sock_recv(client, 1024), 5)
                except ConnectionError:
                    answer = b"reset"
            assert answer.startswith((b"HTTP/1.1 503", b"HTTP/1.1 426", b"reset")), (turns, answer)
            await server.wait_closed()


async def test_handlers_still_running_are_cancelled_after_close_timeout() -> None:
    stubborn = Stubborn()
    server = await portside.serve(stubborn, "127.0.0.1", 0, close_timeout=0.05, ping_interval=None)
    ws = await portside.connect(url(server))
    server.close()
    await server.wait_closed()
    assert stubborn.cancelled.is_set()
    await ws.wait_closed()
    assert ws.close_code == 1001


async def test_close_without_closing_connections() -> None:
    server = await portside.serve(echo, "127.0.0.1", 0, ping_interval=None)
    ws = await portside.connect(url(server))
    server.close(close_connections=False)
    await asyncio.sleep(0)
    await ws.send("still served")
    assert await ws.recv() == "still served"
    await ws.close()
    await server.wait_closed()


async def test_close_from_another_thread() -> None:
    server = await portside.serve(echo, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    thread = threading.Thread(target=loop.call_soon_threadsafe, args=(server.close,))
    thread.start()
    await server.wait_closed()
    thread.join()


async def test_serve_forever_and_cancellation() -> None:
    server = await portside.serve(echo, "127.0.0.1", 0)
    task = asyncio.ensure_future(server.serve_forever())
    async with portside.connect(url(server)) as ws:
        await ws.send("x")
        assert await ws.recv() == "x"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await server.wait_closed()
    assert not server.is_serving()


async def test_start_serving_later() -> None:
    async with portside.serve(echo, "127.0.0.1", 0, start_serving=False) as server:
        assert not server.is_serving()
        await server.start_serving()
        assert server.is_serving()


def test_serve_from_a_loop_that_is_not_running_yet() -> None:
    # The older style: create the server with run_until_complete().
    loop = asyncio.new_event_loop()
    try:
        server = loop.run_until_complete(portside.serve(echo, "127.0.0.1", 0))

        async def use() -> None:
            async with portside.connect(url(server)) as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"

        loop.run_until_complete(use())
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()


# Options and transports.


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_size": -1}, "max_size must be >= 0 or None"),
        ({"max_size": 1.5}, "max_size must be an int or None"),
        ({"max_queue": 0}, "max_queue must be >= 1 or None"),
        ({"read_limit": 10}, "read_limit must be >= 256"),
        ({"read_limit": None}, "read_limit must be an int"),
        ({"write_limit": -1}, "write_limit must be >= 0"),
        ({"ping_interval": -1}, "ping_interval must be a number of seconds"),
        ({"ping_interval": 0}, "ping_interval must be > 0"),
        ({"close_timeout": float("nan")}, "close_timeout"),
        ({"open_timeout": -1}, "open_timeout"),
        ({"compression": "gzip"}, "compression must be 'deflate', None or a portside.Deflate"),
        ({"origins": [42]}, "origins must hold"),
        ({"process_request": "x"}, "process_request must be callable"),
        ({"process_response": 1}, "process_response must be callable"),
    ],
)
def test_invalid_options_fail_at_once(options: dict[str, Any], error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=re.escape(error)):
        portside.serve(echo, "127.0.0.1", 0, **options)


def test_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="handler must be"):
        portside.serve("echo", "127.0.0.1", 0)  # type: ignore[arg-type]


async def test_sock_and_host_are_exclusive() -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match="either sock"):
        portside.serve(echo, "127.0.0.1", 0, sock=sock)


async def test_serve_on_an_existing_socket() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    async with portside.serve(echo, sock=sock) as server, portside.connect(url(server)) as ws:
        await ws.send("via sock")
        assert await ws.recv() == "via sock"


async def test_reuse_port_lets_two_servers_share_a_port() -> None:
    async with portside.serve(echo, "127.0.0.1", 0, reuse_port=True) as first:
        port = first.sockets[0].getsockname()[1]
        async with portside.serve(echo, "127.0.0.1", port, reuse_port=True) as second:
            assert second.sockets[0].getsockname()[1] == port


async def test_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        async with portside.unix_serve(echo, path, ping_interval=None):
            async with portside.unix_connect(path, "ws://localhost/unix") as ws:
                await ws.send("over unix")
                assert await ws.recv() == "over unix"


async def test_tls() -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(CERT)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(CERT)
    async with running(ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        async with portside.connect(f"wss://localhost:{port}/", ssl=client_context) as ws:
            for message in ("secure", bytes(300_000)):
                await ws.send(message)
                assert await ws.recv() == message


async def test_custom_logger_and_server_header() -> None:
    async with running(logger="custom.name", server_header=None) as server:
        assert server.logger.name == "custom.name"
        async with portside.connect(url(server)) as ws:
            assert "Server" not in ws.response_headers


async def test_select_subprotocol_gets_the_connection() -> None:
    def select(connection: portside.ServerConnection, offered: Any) -> str:
        assert connection.request is not None
        return "v2" if "v2" in offered else offered[0]

    async with running(select_subprotocol=select) as server:
        async with portside.connect(url(server), subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"


async def test_frames_sent_with_the_request_are_not_lost() -> None:
    async with running() as server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + client_frame(1, b"eager")
        )
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readexactly(7) == b"\x81\x05eager"
        writer.close()
        await writer.wait_closed()


async def test_close_called_directly_from_another_thread() -> None:
    server = await portside.serve(echo, "127.0.0.1", 0, ping_interval=None)
    ws = await portside.connect(url(server))
    thread = threading.Thread(target=server.close)
    thread.start()
    await server.wait_closed()
    thread.join()
    await ws.wait_closed()
    assert ws.close_code == 1001


async def test_close_from_a_plain_signal_handler() -> None:
    server = await portside.serve(echo, "127.0.0.1", 0, ping_interval=None)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: server.close())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(server.wait_closed(), 5)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert not server.is_serving()


@pytest.mark.parametrize("hook", [False, True], ids=["answered-at-once", "process_request"])
async def test_frames_sent_with_the_request_are_kept_and_bounded(hook: bool) -> None:
    # A client may send frames right behind its request, in the same segment:
    # they are messages like any other, and max_queue still bounds them.
    seen: list[object] = []
    finished = asyncio.Event()

    async def handler(ws: portside.ServerConnection) -> None:
        seen.append(ws.transport.is_reading())
        seen.extend([await ws.recv() for _ in range(3)])
        finished.set()

    def no_answer(connection: portside.ServerConnection, request: portside.Request) -> None:
        return None

    options: dict[str, Any] = {"max_queue": 2}
    if hook:
        options["process_request"] = no_answer
    async with running(handler, **options) as server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        frames = b"".join(client_frame(0x1, f"m{i}".encode()) for i in range(3))
        writer.write(request + frames)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        await asyncio.wait_for(finished.wait(), 5)
        writer.close()
        await writer.wait_closed()
    # Three messages queued against a limit of two: reading was paused.
    assert seen == [False, "m0", "m1", "m2"]


# Draining: close code, spread, graceful timeout, capacity, end-of-connection hook.


async def test_close_with_another_code_and_reason() -> None:
    returned = asyncio.Event()

    async def quits_when_told(ws: portside.ServerConnection) -> None:
        await ws.wait_closed()

    async def returns_at_once(ws: portside.ServerConnection) -> None:
        await returned.wait()

    server = await portside.serve(quits_when_told, "127.0.0.1", 0, ping_interval=None)
    ws = await portside.connect(url(server))
    server.close(code=1012, reason="restarting")
    await server.wait_closed()
    await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1012, "restarting")

    # A handler that returns while the server closes gets the same code.
    server = await portside.serve(
        returns_at_once, "127.0.0.1", 0, ping_interval=None, close_timeout=0.1
    )
    raw = await RawClient.connect(server)
    server.close(code=1012, spread=1.0)
    returned.set()
    frames = await raw.read_until_closed()
    assert frames[0][1] == 0x8
    assert frames[0][2][:2] == (1012).to_bytes(2, "big")
    await raw.close()
    await server.wait_closed()


async def test_close_rejects_codes_that_cannot_be_sent() -> None:
    async with running() as server:
        with pytest.raises(ValueError, match="cannot close connections with 1006"):
            server.close(code=1006)
        with pytest.raises(ValueError, match="cannot close connections with 1000"):
            server.close(code=1000, reason="x" * 124)
        with pytest.raises(ValueError, match="spread must be >= 0"):
            server.close(spread=-1)
        with pytest.raises(ValueError, match="graceful_timeout must be >= 0"):
            server.close(graceful_timeout=-1)
        assert not server.closing


async def test_close_can_let_handshakes_in_progress_complete() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_check(connection: Any, request: Any) -> None:
        if request.path == "/slow":
            entered.set()
            await release.wait()

    server = await portside.serve(
        echo, "127.0.0.1", 0, process_request=slow_check, ping_interval=None
    )
    # Two handshakes in progress: one in process_request, one not even read whole.
    connecting = asyncio.ensure_future(portside.connect(url(server, "/slow")))
    partial = await RawClient.connect(server, handshake=False)
    partial.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    await entered.wait()
    server.close(code=1012, finish_handshakes=True)
    await asyncio.sleep(0)
    release.set()
    partial.send(
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    ws = await connecting  # a 101, not a 503...
    await ws.wait_closed()
    assert ws.close_code == 1012  # ...then the drain's Close frame
    head = await partial.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
    assert await partial.reader.readexactly(4) == b"\x88\x02\x03\xf4"  # Close, 1012
    partial.send(client_frame(0x8, close_payload(1012)))
    assert await partial.reader.read() == b""  # the server closes TCP
    await partial.close()
    await server.wait_closed()


async def test_closing_is_set_before_the_server_stops_accepting() -> None:
    async with running() as server:
        server.close()
        # What a readiness check reads has changed; accepting stops next.
        assert server.closing
        assert server.is_serving()
        await server.wait_closed()
        assert not server.is_serving()


async def test_close_frames_spread_over_time() -> None:
    loop = asyncio.get_running_loop()
    count = 8
    arrivals: list[float] = []

    async with running() as server:
        clients = [await portside.connect(url(server)) for _ in range(count)]
        start = loop.time()
        server.close(spread=0.4)
        served = 0
        for ws in clients:
            # Connections whose Close has not come yet are still served.
            try:
                await ws.send("still here")
                assert await ws.recv() == "still here"
            except portside.ConnectionClosedOK:
                pass
            else:
                served += 1
        assert served >= count // 2

        async def closed(ws: portside.ClientConnection) -> None:
            await ws.wait_closed()
            arrivals.append(loop.time() - start)

        await asyncio.gather(*(closed(ws) for ws in clients))
        await server.wait_closed()
    assert all(ws.close_code == 1001 for ws in clients)
    arrivals.sort()
    # Evenly spread: the first right away, the last near the end of the spread.
    assert arrivals[0] < 0.15
    assert 0.3 < arrivals[-1] < 1.0
    # Not two bursts: each quarter of the spread saw a Close.
    quarters = {min(int(t / 0.1), 3) for t in arrivals}
    assert quarters == {0, 1, 2, 3}


async def test_graceful_timeout_is_separate_from_close_timeout() -> None:
    stubborn = Stubborn()
    loop = asyncio.get_running_loop()
    server = await portside.serve(stubborn, "127.0.0.1", 0, close_timeout=20, ping_interval=None)
    ws = await portside.connect(url(server))
    start = loop.time()
    server.close(graceful_timeout=0.1)
    await server.wait_closed()
    assert stubborn.cancelled.is_set()
    assert loop.time() - start < 5
    await ws.wait_closed()
    assert ws.close_code == 1001


async def test_a_second_close_can_only_bring_the_deadline_nearer() -> None:
    stubborn = Stubborn()
    server = await portside.serve(stubborn, "127.0.0.1", 0, ping_interval=None)
    ws = await portside.connect(url(server))
    server.close(graceful_timeout=math.inf)
    await ws.wait_closed()  # the client answered the Close; the handler runs on
    server.close(graceful_timeout=60)  # farther than now + 0: ignored...
    await asyncio.sleep(0)
    assert not stubborn.cancelled.is_set()
    server.close(graceful_timeout=0)  # ...this one stops it now
    await server.wait_closed()
    assert stubborn.cancelled.is_set()


async def test_max_connections_refuses_newcomers_with_503_and_retry_after() -> None:
    def health(connection: portside.ServerConnection, request: portside.Request) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async with running(max_connections=2, process_request=health) as server:
        first = await portside.connect(url(server))
        second = await portside.connect(url(server))
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server))
        response = info.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert server.open_connections == 2
        # Health checks are still answered, and open connections untouched.
        status, _, _ = await http_get(server, "/healthz")
        assert status == 200
        for ws in (first, second):
            await ws.send("untouched")
            assert await ws.recv() == "untouched"
        await first.close()
        # Room again once one is done.
        async with portside.connect(url(server)) as third:
            await third.send("in")
            assert await third.recv() == "in"
        await second.close()
    assert server.open_connections == 0


async def test_max_connections_without_process_request() -> None:
    async with running(max_connections=1) as server:
        async with portside.connect(url(server)):
            with pytest.raises(portside.InvalidStatus) as info:
                await portside.connect(url(server))
            assert info.value.response.status_code == 503


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_max_connections_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ValueError, match="max_connections must be an int >= 1"):
        portside.serve(echo, "127.0.0.1", 0, max_connections=value)


async def test_on_connection_end_is_called_once_per_connection() -> None:
    ended: list[tuple[int | None, int | None, float]] = []
    three = asyncio.Event()

    def record(connection: portside.ServerConnection) -> None:
        status = connection.response.status_code if connection.response else None
        ended.append((status, connection.close_code, connection.accepted_at))
        if len(ended) == 3:
            three.set()

    async with running(on_connection_end=record) as server:
        async with portside.connect(url(server)) as ws:
            await ws.send("x")
            await ws.recv()
        await http_get(server, "/")  # 426: not a WebSocket request
        idle = await RawClient.connect(server, handshake=False)
        await idle.close()  # gone before its request
        await three.wait()
    assert sorted((str(status), code) for status, code, _ in ended) == [
        ("101", 1000),
        ("426", 1006),
        ("None", 1006),
    ]
    assert all(accepted > 0 for _, _, accepted in ended)


async def test_on_connection_end_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: portside.ServerConnection) -> None:
        raise RuntimeError("hook bug")

    async with running(on_connection_end=broken) as server:
        async with portside.connect(url(server)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
    assert "on_connection_end failed" in caplog.text


def test_on_connection_end_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_connection_end must be callable"):
        portside.serve(echo, "127.0.0.1", 0, on_connection_end=42)


async def test_normalize_process_request_takes_both_forms() -> None:
    def legacy(path: str, request_headers: Any) -> Any:
        return (http.HTTPStatus.OK, [], b"legacy\n") if path == "/old" else None

    async def modern(connection: Any, request: portside.Request) -> Any:
        return connection.respond(200, "modern\n") if request.path == "/new" else None

    def wrong(connection: Any, request: Any) -> Any:
        return 42

    request = portside.Request("/old", portside.Headers())
    normalized = normalize_process_request(legacy)
    response = await normalized(None, request)  # type: ignore[arg-type]
    assert response is not None and response.body == b"legacy\n"
    assert await normalized(None, portside.Request("/x", portside.Headers())) is None  # type: ignore[arg-type]

    class Responder:
        def respond(self, status: int, text: str) -> portside.Response:
            return portside.Response(status, "OK", portside.Headers(), text.encode())

    response = await normalize_process_request(modern)(
        Responder(),  # type: ignore[arg-type]
        portside.Request("/new", portside.Headers()),
    )
    assert response is not None and response.body == b"modern\n"
    with pytest.raises(TypeError, match="process_request returned int"):
        await normalize_process_request(wrong)(None, request)  # type: ignore[arg-type]


# HTTP/1.0: process_request may answer it; the upgrade needs HTTP/1.1.

HTTP10_UPGRADE = (
    b"GET /chat HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def exchange(server: portside.Server, request: bytes) -> tuple[list[bytes], bytes]:
    """Send ``request`` as it is; return the head's lines and the body once the server closes."""
    head, _, body = (await send_to(server, request)).partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def health_check(
    connection: portside.ServerConnection, request: portside.Request
) -> portside.Response | None:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    if request.path == "/chunked":
        headers = portside.Headers([("Transfer-Encoding", "chunked")])
        return portside.Response(200, "OK", headers, b"2\r\nOK\r\n0\r\n\r\n")
    return None


async def test_http10_requests_reach_process_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    async with running(echo, process_request=health_check) as server:
        # HAProxy's default check: HTTP/1.0, no Host header.
        head, body = await exchange(server, b"OPTIONS / HTTP/1.0\r\n\r\n")
        assert head[0] == b"HTTP/1.1 405 Method Not Allowed"
        head, body = await exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert head[0] == b"HTTP/1.1 200 OK"  # RFC 9110 2.5: the server's version
        assert b"Connection: close" in head
        assert body == b"OK\n"
        # Never chunked for an HTTP/1.0 client: decoded, with its length.
        head, body = await exchange(server, b"GET /chunked HTTP/1.0\r\n\r\n")
        assert head[1:] == [b"Connection: close", b"Content-Length: 2"]
        assert body == b"OK"
        # process_request returned None: the upgrade needs HTTP/1.1.
        head, body = await exchange(server, HTTP10_UPGRADE)
        assert head[0] == b"HTTP/1.1 505 HTTP Version Not Supported"
        assert b"Connection: close" in head
        assert b"expected HTTP/1.1: HTTP/1.0" in body
        async with portside.connect(url(server)) as ws:
            await ws.send("still 1.1")
            assert await ws.recv() == "still 1.1"
    failures = [r.getMessage() for r in caplog.records if "handshake failed" in r.getMessage()]
    assert len(failures) == 2  # the 405 and the 505; the health checks are not failures
    assert "unsupported protocol; expected HTTP/1.1: HTTP/1.0" in failures[1]


async def test_an_http10_upgrade_gets_505_without_process_request() -> None:
    async with running(echo) as server:
        head, _ = await exchange(server, HTTP10_UPGRADE)
        assert head[0] == b"HTTP/1.1 505 HTTP Version Not Supported"
        head, _ = await exchange(server, b"GET / HTTP/1.0\r\n\r\n")
        assert head[0] == b"HTTP/1.1 505 HTTP Version Not Supported"
