"""Servers of the threading API over real loopback sockets: lifecycle, handshakes, options."""

from __future__ import annotations

import contextlib
import http
import logging
import pathlib
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from portside.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from portside.protocol.headers import Headers
from portside.protocol.http11 import Request, Response
from portside.protocol.state import CLOSED
from portside.sync.client import connect, unix_connect
from portside.sync.server import SERVER_HEADER, Server, ServerConnection, serve, unix_serve
from tests.sync.helpers import TIMEOUT, RawClient, echo, running, running_unix, url

CERT = pathlib.Path(__file__).parent.parent / "asyncio" / "localhost.pem"


def http_request(server: Server, request: str) -> tuple[int, bytes, bytes]:
    """Send ``request`` as it is; return (status, head, body) once the server closes."""
    raw = RawClient.connect(server, handshake=False)
    with raw:
        raw.send(request.encode())
        data = raw.read_all()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def http_get(server: Server, path: str = "/", method: str = "GET") -> tuple[int, bytes, bytes]:
    return http_request(server, f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")


# Lifecycle.


def test_serve_forever_until_shutdown_from_another_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    with connect(url(server)) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
    server.shutdown()
    thread.join()
    assert server.socket.fileno() == -1
    assert re.search(r"server listening on 127\.0\.0\.1:\d+", caplog.text)
    assert "server closing" in caplog.text
    assert "server closed" in caplog.text
    # Again: nothing to do.
    server.shutdown()
    server.serve_forever()


def test_shutdown_before_serve_forever() -> None:
    with serve(echo, "127.0.0.1", 0) as server:
        assert server.fileno() == server.socket.fileno() >= 0
    assert server.socket.fileno() == -1
    server.serve_forever()  # returns at once


def test_shutdown_closes_connections_with_1001() -> None:
    with running() as server:
        with connect(url(server)) as ws:
            ws.send("x")
            assert ws.recv(timeout=TIMEOUT) == "x"
            assert len(server.connections) == 1
            shutdown = threading.Thread(target=server.shutdown)
            shutdown.start()
            with pytest.raises(ConnectionClosedOK) as raised:
                ws.recv(timeout=TIMEOUT)
            shutdown.join()
        assert raised.value.code == 1001
        assert server.connections == set()


def test_shutdown_with_a_code_and_reason() -> None:
    with running() as server, connect(url(server)) as ws:
        ws.send("x")
        ws.recv(timeout=TIMEOUT)
        shutdown = threading.Thread(
            target=server.shutdown, kwargs={"code": 1012, "reason": "restart"}
        )
        shutdown.start()
        with pytest.raises(ConnectionClosedError) as raised:
            ws.recv(timeout=TIMEOUT)
        shutdown.join()
    assert (raised.value.code, raised.value.reason) == (1012, "restart")


def test_shutdown_without_closing_connections_waits_for_them() -> None:
    with running() as server:
        with connect(url(server)) as ws:
            ws.send("x")
            ws.recv(timeout=TIMEOUT)
            shutdown = threading.Thread(target=server.shutdown, args=(False,))
            shutdown.start()
            # The connection lives on, and shutdown() waits for its handler.
            ws.send("still here")
            assert ws.recv(timeout=TIMEOUT) == "still here"
            shutdown.join(0.05)
            assert shutdown.is_alive()
        shutdown.join()
        assert ws.close_code == 1000


def test_shutdown_answers_handshakes_in_progress_with_503() -> None:
    with running() as server:
        raw = RawClient.connect(server, handshake=False)
        with raw:
            raw.send(b"GET / HTTP/1.1\r\n")  # the request is not complete
            deadline_connection = _wait_handshaking(server)
            assert deadline_connection
            shutdown = threading.Thread(target=server.shutdown)
            shutdown.start()
            data = raw.read_all()
            shutdown.join()
    assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert data.endswith(b"Server is shutting down.\n")


def _wait_handshaking(server: Server) -> bool:
    """Wait until the server reads a request (private state: no event tells it)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with server._lock:
            if server._handshaking:
                return True
        threading.Event().wait(0.001)
    return False


def test_handshake_completing_during_shutdown_gets_503() -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_check(connection: ServerConnection, request: Request) -> None:
        entered.set()
        assert release.wait(TIMEOUT)

    with running(process_request=slow_check) as server:
        result: queue.Queue[BaseException] = queue.Queue()

        def client() -> None:
            try:
                connect(url(server))
            except BaseException as exc:
                result.put(exc)

        thread = threading.Thread(target=client)
        thread.start()
        assert entered.wait(TIMEOUT)
        shutdown = threading.Thread(target=server.shutdown)
        shutdown.start()
        while not server.closing:
            threading.Event().wait(0.001)
        release.set()
        thread.join()
        shutdown.join()
    error = result.get_nowait()
    assert isinstance(error, InvalidStatus)
    assert error.response.status_code == 503


def test_shutdown_from_a_handler() -> None:
    stopped = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.recv(timeout=TIMEOUT)
        ws.server.shutdown()
        stopped.set()

    with running(handler) as server, connect(url(server)) as ws:
        ws.send("stop")
        assert stopped.wait(TIMEOUT)
        with pytest.raises(ConnectionClosedOK) as raised:
            ws.recv(timeout=TIMEOUT)
    assert raised.value.code == 1001


def test_shutdown_waits_for_the_handler_that_shut_the_server_down() -> None:
    # The handler's own shutdown() cannot wait for itself; a later one (the
    # `with` block's) waits for it too, however long it runs after its call.
    finished = threading.Event()

    def handler(ws: ServerConnection) -> None:
        ws.recv(timeout=TIMEOUT)
        ws.server.shutdown()
        time.sleep(0.2)  # work after the call: not waiting for anything
        finished.set()

    with running(handler) as server, connect(url(server)) as ws:
        ws.send("stop")
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
    assert finished.is_set()


def test_shutdown_from_a_handler_while_the_server_shuts_down() -> None:
    # The first call waits for the handler: the handler's call cannot wait for
    # the first one. (Were they to wait for each other, the test fails, then
    # releases both, rather than hang the run.)
    returned = threading.Event()

    def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)  # closed by the first shutdown()
        ws.server.shutdown()
        returned.set()

    server = serve(handler, "127.0.0.1", 0, ping_interval=None)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    with connect(url(server)):
        shutting_down = threading.Thread(target=server.shutdown, daemon=True)
        shutting_down.start()
        shutting_down.join(TIMEOUT)
        deadlocked = shutting_down.is_alive()
        if deadlocked:
            server._shutdown_done.set()  # releases the handler, which the first call waits for
        assert not deadlocked, "shutdown() and the handler's shutdown() wait for each other"
    serving.join()
    assert returned.is_set()


def test_context_manager_shuts_down() -> None:
    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
    thread.join()


# Handlers.


def test_handler_returning_closes_with_1000() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send("bye")

    with running(handler) as server, connect(url(server)) as ws:
        assert ws.recv(timeout=TIMEOUT) == "bye"
        with pytest.raises(ConnectionClosedOK) as raised:
            ws.recv(timeout=TIMEOUT)
    assert raised.value.code == 1000


def test_handler_raising_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    def handler(ws: ServerConnection) -> None:
        raise RuntimeError("boom")

    with running(handler) as server, connect(url(server)) as ws:
        with pytest.raises(ConnectionClosedError) as raised:
            ws.recv(timeout=TIMEOUT)
    assert raised.value.code == 1011
    assert "connection handler failed" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def test_connection_closed_escaping_the_handler_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        try:
            ws.recv(timeout=TIMEOUT)
            ws.recv(timeout=TIMEOUT)
        finally:
            done.set()

    with running(handler) as server:
        with connect(url(server)) as ws:
            ws.send("one")
        assert done.wait(TIMEOUT)
    assert "handler failed" not in caplog.text


def test_connections_are_served_concurrently() -> None:
    with running() as server:
        clients = [connect(url(server)) for _ in range(10)]
        try:
            for i, ws in enumerate(clients):
                ws.send(str(i))
            assert [ws.recv(timeout=TIMEOUT) for ws in clients] == [str(i) for i in range(10)]
            assert len(server.connections) == 10
        finally:
            for ws in clients:
                ws.close()


# The opening handshake.


def test_process_request_answers_instead(caplog: pytest.LogCaptureFixture) -> None:
    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    with running(process_request=health) as server:
        status, head, body = http_get(server, "/healthz")
        assert (status, body) == (200, b"OK\n")
        assert f"Server: {SERVER_HEADER}".encode() in head
        with connect(url(server, "/chat")) as ws:
            ws.send("still a WebSocket server")
            assert ws.recv(timeout=TIMEOUT) == "still a WebSocket server"


@pytest.mark.parametrize("result", ["raise", "wrong type"])
def test_process_request_failing_gives_500(result: str, caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: ServerConnection, request: Request) -> Any:
        if result == "raise":
            raise ValueError("oops")
        return (200, [], b"legacy")

    with running(process_request=broken) as server:
        status, _, body = http_get(server)
    assert status == 500
    assert body == b"Failed to open a WebSocket connection.\nSee server log for more information.\n"
    assert "process_request failed" in caplog.text


def test_process_response_modifies_or_replaces_the_response() -> None:
    def add_header(connection: ServerConnection, request: Request, response: Response) -> None:
        response.headers["X-Extra"] = "yes"

    with running(process_response=add_header) as server, connect(url(server)) as ws:
        assert ws.response is not None
        assert ws.response.headers["X-Extra"] == "yes"

    def replace(connection: ServerConnection, request: Request, response: Response) -> Response:
        return connection.respond(403, "no\n")

    with running(process_response=replace) as server:
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server))
    assert raised.value.response.status_code == 403
    assert raised.value.response.body == b"no\n"


def test_process_response_failing_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: ServerConnection, request: Request, response: Response) -> None:
        raise ValueError("oops")

    with running(process_response=broken) as server:
        assert http_get(server)[0] == 500
    assert "process_response failed" in caplog.text


@pytest.mark.parametrize(
    ("request_text", "status", "log"),
    [
        ("NOT HTTP\r\n\r\n", 400, "invalid HTTP request"),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, "opening handshake failed"),
        ("POST / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "opening handshake failed"),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            426,
            "opening handshake failed",
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
            "opening handshake failed",
        ),
        ("GET / HTTP/1.1\r\n" + "X: y\r\n" * 200 + "\r\n", 431, "invalid HTTP request"),
    ],
    ids=["garbage", "not-upgrade", "post", "version", "key", "too-many-headers"],
)
def test_handshake_failures_get_a_status_and_one_log_line(
    request_text: str, status: int, log: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    with running() as server:
        assert http_request(server, request_text)[0] == status
    records = [r for r in caplog.records if log in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None


def test_version_failure_says_which_version() -> None:
    request = (
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    )
    with running() as server:
        _, head, _ = http_request(server, request)
    assert b"Sec-WebSocket-Version: 13" in head


def test_origins() -> None:
    with running(
        origins=["https://good.example", re.compile(r"https://.*\.good\.example")]
    ) as server:
        for origin in ("https://good.example", "https://a.good.example"):
            with connect(url(server), origin=origin) as ws:
                ws.send("ok")
                assert ws.recv(timeout=TIMEOUT) == "ok"
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server), origin="https://evil.example")
        assert raised.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            connect(url(server))
    with running(origins=[None]) as server, connect(url(server)) as ws:
        ws.send("no origin")
        assert ws.recv(timeout=TIMEOUT) == "no origin"


def test_subprotocols_and_select_subprotocol(caplog: pytest.LogCaptureFixture) -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send(ws.subprotocol or "none")

    with running(handler, subprotocols=["b", "a"]) as server:
        with connect(url(server), subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
            assert ws.recv(timeout=TIMEOUT) == "b"
        with connect(url(server), subprotocols=["c"]) as ws:
            assert ws.subprotocol is None

    seen: list[Sequence[str]] = []

    def select(connection: ServerConnection, offered: Sequence[str]) -> str | None:
        assert isinstance(connection, ServerConnection)
        seen.append(offered)
        if "fail" in offered:
            raise RuntimeError("selector failed")
        return offered[-1]

    with running(handler, select_subprotocol=select) as server:
        with connect(url(server), subprotocols=["x", "y"]) as ws:
            assert ws.recv(timeout=TIMEOUT) == "y"
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server), subprotocols=["fail"])
    assert raised.value.response.status_code == 500
    assert seen == [["x", "y"], ["fail"]]
    assert "the opening handshake failed" in caplog.text


def test_server_header() -> None:
    with running(server_header=None) as server, connect(url(server)) as ws:
        assert ws.response is not None
        assert "Server" not in ws.response.headers
    with running(server_header="custom/1") as server:
        assert b"Server: custom/1" in http_get(server)[1]


def test_compression_option() -> None:
    with running(compression=None) as server, connect(url(server)) as ws:
        assert ws.protocol.deflate is None
    with running() as server, connect(url(server)) as ws:
        assert ws.protocol.deflate is not None
        ws.send("compressible " * 100)
        assert ws.recv(timeout=TIMEOUT) == "compressible " * 100


def test_open_timeout_closes_slow_handshakes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    with running(open_timeout=0.05) as server:
        raw = RawClient.connect(server, handshake=False)
        with raw:
            assert raw.read_all() == b""
    assert "opening handshake timed out" in caplog.text


def test_open_timeout_frees_a_rejection_the_peer_does_not_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A refused request whose response is larger than the socket buffers, from
    # a peer that never reads.
    caplog.set_level(logging.INFO, "portside.server")
    body = "x" * (16 << 20)
    with running(
        open_timeout=0.1, process_request=lambda ws, request: ws.respond(404, body)
    ) as server:
        host, port = server.socket.getsockname()[:2]
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # Without reading, wait for the server to give up.
            deadline = time.monotonic() + TIMEOUT
            while "not read" not in caplog.text:
                assert time.monotonic() < deadline
                threading.Event().wait(0.01)
    assert "HTTP 404 response not read within open_timeout" in caplog.text


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="handler"):
        serve("not callable", "127.0.0.1", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue"):
        serve(echo, "127.0.0.1", 0, max_queue=0)
    with pytest.raises(ValueError, match="open_timeout"):
        serve(echo, "127.0.0.1", 0, open_timeout=-1)
    with pytest.raises(ValueError, match="compression"):
        serve(echo, "127.0.0.1", 0, compression="zstd")
    with pytest.raises(TypeError, match="origins"):
        serve(echo, "127.0.0.1", 0, origins=[42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="process_request"):
        serve(echo, "127.0.0.1", 0, process_request=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="process_response"):
        serve(echo, "127.0.0.1", 0, process_response=42)  # type: ignore[arg-type]
    with socket.create_server(("127.0.0.1", 0)) as sock, pytest.raises(ValueError, match="sock"):
        serve(echo, "127.0.0.1", sock=sock)


# Sockets.


def test_listening_socket_given() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    with running(sock=sock) as server, connect(url(server)) as ws:
        assert server.socket is sock
        ws.send("via sock")
        assert ws.recv(timeout=TIMEOUT) == "via sock"


def test_unix_serve_and_unix_connect() -> None:
    with running_unix() as path:
        with unix_connect(path) as ws:
            ws.send("over a Unix socket")
            assert ws.recv(timeout=TIMEOUT) == "over a Unix socket"
            assert ws.remote_address == path
        with pytest.raises(TypeError, match="path"):
            unix_connect()
    with pytest.raises(TypeError, match="path"):
        unix_serve(echo)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(CERT)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(CERT)
    return server_context, client_context


def test_tls() -> None:
    server_context, client_context = tls_contexts()
    with running(ssl=server_context, max_size=None) as server:
        port = server.socket.getsockname()[1]
        with connect(f"wss://localhost:{port}/", ssl=client_context, max_size=None) as ws:
            for message in ("secure", b"x" * 300_000, "é" * 70_000):
                ws.send(message)
                assert ws.recv(timeout=TIMEOUT) == message
            ws.send(["frag", "ments"])
            assert ws.recv(timeout=TIMEOUT) == "fragments"
            assert ws.ping().wait(TIMEOUT)
            assert ws.transport.secure
        assert ws.close_code == 1000


def test_tls_handshake_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    server_context, _ = tls_contexts()
    with running(ssl=server_context) as server:
        # Plain HTTP to a TLS port.
        status_line = RawClient.connect(server, handshake=False)
        with status_line:
            status_line.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status_line.read_all()
    assert "TLS handshake failed" in caplog.text


def test_create_connection_subclass() -> None:
    class Custom(ServerConnection):
        def greeting(self) -> str:
            return "custom"

    def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, Custom)
        ws.send(ws.greeting())

    with running(handler, create_connection=Custom) as server, connect(url(server)) as ws:
        assert ws.recv(timeout=TIMEOUT) == "custom"


def test_respond_builds_plain_text_responses() -> None:
    seen: list[Response] = []

    def hook(connection: ServerConnection, request: Request) -> Response:
        response = connection.respond(http.HTTPStatus.IM_A_TEAPOT, "short and stout\n")
        response.headers["X-Tea"] = "yes"
        seen.append(response)
        return response

    with running(process_request=hook) as server:
        status, head, body = http_get(server)
    assert (status, body) == (418, b"short and stout\n")
    assert b"X-Tea: yes" in head
    assert isinstance(seen[0].headers, Headers)


def test_server_closes_tcp_after_the_closing_handshake() -> None:
    with running() as server, RawClient.connect(server) as raw:
        from tests.framing import client_frame, close_payload

        raw.send(client_frame(8, close_payload(1000)))
        frames = raw.read_until_closed()
    assert frames == [(0x88, 8, close_payload(1000))]


def test_connection_state_after_the_handler() -> None:
    connections: list[ServerConnection] = []

    def handler(ws: ServerConnection) -> None:
        connections.append(ws)

    with running(handler) as server, connect(url(server)) as ws:
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
    assert connections[0].state is CLOSED
    assert connections[0].wait_closed(TIMEOUT)


# HTTP/1.0: process_request may answer it; the upgrade needs HTTP/1.1.

HTTP10_UPGRADE = (
    "GET /chat HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def health_check(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    if request.path == "/chunked":
        headers = Headers([("Transfer-Encoding", "chunked")])
        return Response(200, "OK", headers, b"2\r\nOK\r\n0\r\n\r\n")
    return None


def test_http10_requests_reach_process_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.server")
    with running(process_request=health_check) as server:
        # HAProxy's default check: HTTP/1.0, no Host header.
        status, head, _ = http_request(server, "OPTIONS / HTTP/1.0\r\n\r\n")
        assert status == 405
        status, head, body = http_request(server, "GET /healthz HTTP/1.0\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"  # RFC 9110 2.5
        assert b"Connection: close" in head
        assert body == b"OK\n"
        # Never chunked for an HTTP/1.0 client: decoded, with its length.
        _, head, body = http_request(server, "GET /chunked HTTP/1.0\r\n\r\n")
        assert head.split(b"\r\n")[1:] == [b"Connection: close", b"Content-Length: 2"]
        assert body == b"OK"
        # process_request returned None: the upgrade needs HTTP/1.1.
        status, head, body = http_request(server, HTTP10_UPGRADE)
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 505 HTTP Version Not Supported"
        assert b"Connection: close" in head
        assert b"expected HTTP/1.1: HTTP/1.0" in body
        with connect(url(server)) as ws:
            ws.send("still 1.1")
            assert ws.recv(timeout=TIMEOUT) == "still 1.1"
    failures = [r.getMessage() for r in caplog.records if "handshake failed" in r.getMessage()]
    assert len(failures) == 2  # the 405 and the 505; the health checks are not failures
    assert "unsupported protocol; expected HTTP/1.1: HTTP/1.0" in failures[1]


def test_an_http10_upgrade_gets_505_without_process_request() -> None:
    with running() as server:
        assert http_request(server, HTTP10_UPGRADE)[0] == 505
        assert http_request(server, "GET / HTTP/1.0\r\n\r\n")[0] == 505
