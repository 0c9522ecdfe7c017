"""Clients of the threading API over loopback sockets: options, handshake failures, redirects."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from portside.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
)
from portside.protocol.deflate import Deflate
from portside.protocol.http11 import Request, Response
from portside.protocol.state import CLOSED
from portside.sync.client import (
    USER_AGENT,
    ClientConnection,
    connect,
    reconnect,
    unix_connect,
    unix_reconnect,
)
from portside.sync.server import ServerConnection
from tests.sync.helpers import TIMEOUT, raw_http_server, running, running_unix, url
from tests.sync.test_server import tls_contexts


def request_of(ws: ServerConnection) -> None:
    """A handler that sends back the request's headers, one message each."""
    assert ws.request is not None
    for name, value in ws.request.headers.raw_items():
        ws.send(f"{name}: {value}")
    ws.send("end")


def received_headers(ws: ClientConnection) -> list[str]:
    headers = []
    while (message := ws.recv(timeout=TIMEOUT)) != "end":
        headers.append(str(message))
    return headers


def test_request_headers() -> None:
    with running(request_of) as server:
        with connect(url(server), additional_headers={"X-One": "1"}, origin="https://o") as ws:
            headers = received_headers(ws)
        assert "X-One: 1" in headers
        assert "Origin: https://o" in headers
        assert f"User-Agent: {USER_AGENT}" in headers
        with connect(url(server), extra_headers=[("X-Two", "2")], user_agent_header=None) as ws:
            headers = received_headers(ws)
        assert "X-Two: 2" in headers
        assert not any(h.startswith("User-Agent") for h in headers)
        with connect(url(server), additional_headers={"User-Agent": "mine"}) as ws:
            assert "User-Agent: mine" in received_headers(ws)
    with pytest.raises(TypeError, match="extra_headers or additional_headers"):
        connect("ws://localhost/", extra_headers={}, additional_headers={})


def test_user_info_becomes_basic_authorization() -> None:
    with running(request_of) as server:
        port = server.socket.getsockname()[1]
        with connect(f"ws://user:pass@127.0.0.1:{port}/") as ws:
            assert "Authorization: Basic dXNlcjpwYXNz" in received_headers(ws)


def test_path_and_query_reach_the_server() -> None:
    def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        ws.send(ws.request.path)

    with running(handler) as server, connect(url(server, "/room/1?x=y")) as ws:
        assert ws.recv(timeout=TIMEOUT) == "/room/1?x=y"


def test_connect_without_a_context_manager() -> None:
    with running() as server:
        ws = connect(url(server))
        try:
            ws.send("plain")
            assert ws.recv(timeout=TIMEOUT) == "plain"
        finally:
            ws.close()
        assert ws.state is CLOSED


def test_compression() -> None:
    with running() as server:
        with connect(url(server), compression=None) as ws:
            assert ws.protocol.deflate is None
        with connect(url(server), compression=Deflate(client_max_window_bits=9)) as ws:
            assert ws.protocol.deflate is not None
            ws.send("squeeze " * 200)
            assert ws.recv(timeout=TIMEOUT) == "squeeze " * 200


def test_subprotocol_the_server_did_not_offer() -> None:
    def accept_other(connection: ServerConnection, request: Request, response: Response) -> None:
        response.headers["Sec-WebSocket-Protocol"] = "other"

    with running(process_response=accept_other) as server:
        with pytest.raises(NegotiationError):
            connect(url(server), subprotocols=["chat"])


def test_error_status_carries_the_response() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(404, "nothing here\n")

    with running(process_request=refuse) as server:
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server))
    assert raised.value.response.status_code == 404
    assert raised.value.response.body == b"nothing here\n"


def test_redirects_are_followed() -> None:
    with running(request_of) as server:
        target = url(server, "/final")
        redirect = f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
        with raw_http_server(redirect.encode()) as port:
            with connect(f"ws://127.0.0.1:{port}/start") as ws:
                assert ws.request is not None
                assert ws.request.path == "/final"
                assert f"Host: {target[5:-6]}" in received_headers(ws)
            with pytest.raises(InvalidStatus) as raised:
                connect(f"ws://127.0.0.1:{port}/start", follow_redirects=False)
            assert raised.value.response.status_code == 302


def test_relative_redirect() -> None:
    def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        ws.send(ws.request.path)

    def redirect(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/old":
            response = connection.respond(301, "moved\n")
            response.headers["Location"] = "/new"
            return response
        return None

    with running(handler, process_request=redirect) as server, connect(url(server, "/old")) as ws:
        assert ws.recv(timeout=TIMEOUT) == "/new"


def test_redirect_loop_gives_up() -> None:
    loop = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"
    with raw_http_server(loop) as port:
        with pytest.raises(InvalidHandshake, match="more than 10 redirects"):
            connect(f"ws://127.0.0.1:{port}/")


def test_redirect_from_wss_to_ws_is_refused() -> None:
    server_context, client_context = tls_contexts()

    def redirect(connection: ServerConnection, request: Request) -> Response:
        response = connection.respond(302, "")
        response.headers["Location"] = "ws://localhost/"
        return response

    with running(ssl=server_context, process_request=redirect) as server:
        port = server.socket.getsockname()[1]
        with pytest.raises(InvalidURI, match="redirect from wss:// to ws:// refused"):
            connect(f"wss://localhost:{port}/", ssl=client_context)


def test_redirect_with_a_socket_given() -> None:
    moved = b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    with raw_http_server(moved) as port:
        sock = socket.create_connection(("127.0.0.1", port))
        with pytest.raises(InvalidHandshake, match="socket given"):
            connect(f"ws://127.0.0.1:{port}/", sock=sock)
        assert sock.fileno() == -1


def test_response_ending_with_the_connection() -> None:
    response = b"HTTP/1.1 500 Internal Server Error\r\n\r\nbody until the end"
    with raw_http_server(response) as port:
        with pytest.raises(InvalidStatus) as raised:
            connect(f"ws://127.0.0.1:{port}/")
    assert raised.value.response.status_code == 500
    assert raised.value.response.body == b"body until the end"


def test_connection_closed_during_the_handshake() -> None:
    with raw_http_server(b"HTTP/1.1 101 Switching") as port:
        with pytest.raises(InvalidMessage):
            connect(f"ws://127.0.0.1:{port}/")


def test_open_timeout() -> None:
    with raw_http_server(b"", close=False) as port:
        with pytest.raises(TimeoutError, match="opening handshake"):
            connect(f"ws://127.0.0.1:{port}/", open_timeout=0.05)


def test_tls_handshake_timeout() -> None:
    with raw_http_server(b"", close=False) as port:
        # The server never answers the ClientHello.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            with pytest.raises(TimeoutError, match="TLS handshake"):
                connect("wss://localhost/", sock=sock, open_timeout=0.05)


def test_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        connect(f"ws://127.0.0.1:{port}/")


def test_invalid_options() -> None:
    with pytest.raises(InvalidURI):
        connect("http://localhost/")
    with pytest.raises(InvalidURI, match="ssl"):
        connect("ws://localhost/", ssl=ssl.create_default_context())
    with pytest.raises(ValueError, match="open_timeout"):
        connect("ws://localhost/", open_timeout=-1)
    with pytest.raises(ValueError, match="ping_interval"):
        connect("ws://localhost/", ping_interval=0)
    with pytest.raises(TypeError, match="max_queue"):
        connect("ws://localhost/", max_queue="16")
    with pytest.raises(ValueError, match="low water mark"):
        connect("ws://localhost/", max_queue=(4, 8))
    with pytest.raises(TypeError, match="unexpected keyword"):
        connect("ws://localhost/", backlog=5)


def test_socket_given() -> None:
    with running() as server:
        sock = socket.create_connection(server.socket.getsockname()[:2])
        with connect("ws://example.com/", sock=sock) as ws:
            assert ws.socket is sock
            ws.send("via sock")
            assert ws.recv(timeout=TIMEOUT) == "via sock"
        assert sock.fileno() == -1


def test_address_given() -> None:
    with running(request_of) as server:
        host, port = server.socket.getsockname()[:2]
        with connect("ws://example.com:1234/", address=(host, port)) as ws:
            assert "Host: example.com:1234" in received_headers(ws)


def test_tls_with_server_hostname() -> None:
    server_context, client_context = tls_contexts()
    with running(ssl=server_context) as server:
        port = server.socket.getsockname()[1]
        with connect(
            f"wss://127.0.0.1:{port}/", ssl=client_context, server_hostname="localhost"
        ) as ws:
            ws.send("checked against localhost")
            assert ws.recv(timeout=TIMEOUT) == "checked against localhost"
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(f"wss://localhost:{port}/", ssl=client_context, server_hostname="wrong.example")


def test_create_connection_subclass_and_logger() -> None:
    class Custom(ClientConnection):
        pass

    with running() as server:
        with connect(url(server), create_connection=Custom, logger="custom.logger") as ws:
            assert isinstance(ws, Custom)
            assert ws.logger.name == "custom.logger"


def test_max_queue_of_the_client() -> None:
    def burst(ws: ServerConnection) -> None:
        for i in range(50):
            ws.send(str(i))
        ws.recv(timeout=TIMEOUT)

    with running(burst) as server, connect(url(server), max_queue=(4, 2)) as ws:
        assert [ws.recv(timeout=TIMEOUT) for _ in range(50)] == [str(i) for i in range(50)]
        ws.send("done")


# Reconnecting.


def no_delays() -> Iterator[float]:
    while True:
        yield 0.001


def test_reconnect_survives_a_server_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portside.client")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[str] = []
    with running(sock=listener) as first:
        connections = reconnect(f"ws://127.0.0.1:{port}/", reconnect_delays=no_delays)
        for ws in connections:
            ws.send("hello")
            received.append(str(ws.recv(timeout=TIMEOUT)))
            if len(received) == 1:
                # The server goes away, with 1001: the body ends, the loop reconnects.
                threading.Thread(target=first.shutdown).start()
                with pytest.raises(ConnectionClosedOK):
                    ws.recv(timeout=TIMEOUT)
                break
    # Meanwhile nothing listens: attempts fail and are retried.
    attempts = iter(connections)
    with running(port=port) as second:
        ws = next(attempts)
        ws.send("again")
        received.append(str(ws.recv(timeout=TIMEOUT)))
        attempts.close()
    assert ws.state is CLOSED
    assert received == ["hello", "again"]
    del second


def test_reconnect_retries_transient_errors_and_raises_fatal_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "portside.client")
    refusals = [503, 502]

    def flaky(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/missing":
            return connection.respond(404, "no\n")
        if refusals:
            return connection.respond(refusals.pop(0), "later\n")
        return None

    with running(process_request=flaky) as server:
        for ws in reconnect(url(server), reconnect_delays=no_delays):
            ws.send("finally")
            assert ws.recv(timeout=TIMEOUT) == "finally"
            break
        assert refusals == []
        assert caplog.text.count("connect failed; reconnecting in") == 2
        with pytest.raises(InvalidStatus) as raised:
            for _ in reconnect(url(server, "/missing"), reconnect_delays=no_delays):
                pass
        assert raised.value.response.status_code == 404


def test_reconnect_process_exception() -> None:
    class Fatal(Exception):
        pass

    seen: list[Exception] = []

    def stop_at_once(exc: Exception) -> Exception | None:
        seen.append(exc)
        return Fatal("stop")

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(Fatal) as raised:
        for _ in reconnect(f"ws://127.0.0.1:{port}/", process_exception=stop_at_once):
            pass
    assert isinstance(seen[0], ConnectionRefusedError)
    assert raised.value.__cause__ is seen[0]

    def raising(exc: Exception) -> Exception | None:
        raise Fatal("raised")

    with pytest.raises(Fatal, match="raised"):
        for _ in reconnect(f"ws://127.0.0.1:{port}/", process_exception=raising):
            pass


def test_reconnect_waits_after_a_close_asking_to_come_back_later() -> None:
    def busy(ws: ServerConnection) -> None:
        ws.close(1013, "try again later")

    asked: list[int] = []

    def delays() -> Iterator[float]:
        while True:
            asked.append(1)
            yield 0.001

    with running(busy) as server:
        codes = []
        for ws in reconnect(url(server), reconnect_delays=delays):
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=TIMEOUT)
            codes.append(ws.close_code)
            if len(codes) == 2:
                break
    assert codes == [1013, 1013]
    assert asked == [1]  # one generator: the delays went on from one close to the next


def test_reconnect_as_a_context_manager_and_connect_legacy_false() -> None:
    with running() as server:
        connector = connect(url(server), legacy=False)
        assert isinstance(connector, reconnect)
        with connector as ws:
            with pytest.raises(RuntimeError, match="reentrant"), connector:
                pass
            ws.send("managed")
            assert ws.recv(timeout=TIMEOUT) == "managed"
        assert ws.state is CLOSED
        with connect(url(server), legacy=True) as ws:
            ws.send("legacy")
            assert ws.recv(timeout=TIMEOUT) == "legacy"


def test_unix_reconnect() -> None:
    with running_unix() as path:
        for ws in unix_reconnect(path):
            ws.send("unix")
            assert ws.recv(timeout=TIMEOUT) == "unix"
            break
        connector = unix_connect(path, legacy=False)
        assert isinstance(connector, reconnect)
        with connector as ws:
            ws.send("legacy=False")
            assert ws.recv(timeout=TIMEOUT) == "legacy=False"
        with pytest.raises(TypeError, match="path"):
            unix_reconnect()


def test_credentials_are_not_passed_on_to_another_origin() -> None:
    with running(request_of) as final:
        target = url(final, "/final")
        redirect = f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
        with raw_http_server(redirect.encode()) as port:
            headers = {"Authorization": "Bearer secret", "Cookie": "c=1", "X-Other": "kept"}
            with connect(f"ws://localhost:{port}/", additional_headers=headers) as ws:
                received = received_headers(ws)
    assert "X-Other: kept" in received
    assert not any(h.startswith(("Authorization", "Cookie")) for h in received)


def test_handshake_cut_short_is_retried() -> None:
    # The server closes the connection while the client reads the response.
    with raw_http_server(b"HTTP/1.1 101 Switching") as port:
        with pytest.raises(InvalidMessage) as raised:
            connect(f"ws://127.0.0.1:{port}/")
    assert isinstance(raised.value.__cause__, EOFError)
