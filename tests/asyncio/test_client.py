"""Clients over real loopback sockets: handshake outcomes, redirects, options."""

from __future__ import annotations

import asyncio
import http
import pathlib
import socket
import ssl
from typing import Any

import pytest

import portside
from tests.asyncio.helpers import echo, running, url

CERT = pathlib.Path(__file__).with_name("localhost.pem")


async def test_connect_as_awaitable_and_context_manager() -> None:
    async with running() as server:
        ws = await portside.connect(url(server))
        await ws.send("a")
        assert await ws.recv() == "a"
        await ws.close()
        async with portside.connect(url(server)) as ws:
            assert ws.open
        assert ws.closed


async def test_refused_handshake_raises_invalid_status() -> None:
    def refuse(
        connection: portside.ServerConnection, request: portside.Request
    ) -> portside.Response:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "nothing here\n")

    async with running(process_request=refuse) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server))
        assert info.value.response.status_code == 404
        assert info.value.response.body == b"nothing here\n"


async def test_redirects_are_followed() -> None:
    async with running() as target:

        def redirect(connection: Any, request: portside.Request) -> portside.Response | None:
            if request.path == "/old":
                response: portside.Response = connection.respond(301, "moved\n")
                response.headers["Location"] = url(target, "/new")
                return response
            if request.path == "/relative":
                response = connection.respond(302, "moved\n")
                response.headers["Location"] = "/old"
                return response
            return None

        async with running(process_request=redirect) as server:
            async with portside.connect(url(server, "/relative")) as ws:
                assert ws.request is not None
                assert ws.request.path == "/new"
            with pytest.raises(portside.InvalidStatus):
                await portside.connect(url(server, "/old"), follow_redirects=False)


async def test_redirect_loop_gives_up() -> None:
    def loop(connection: Any, request: portside.Request) -> portside.Response:
        response: portside.Response = connection.respond(307, "again\n")
        response.headers["Location"] = request.path
        return response

    async with running(process_request=loop) as server:
        with pytest.raises(portside.InvalidHandshake, match="redirects"):
            await portside.connect(url(server))


async def test_redirect_without_location() -> None:
    async with running(process_request=lambda c, r: c.respond(302, "x")) as server:
        with pytest.raises(portside.InvalidStatus):
            await portside.connect(url(server))


async def test_redirect_with_two_locations_is_not_followed() -> None:
    def redirect(connection: Any, request: portside.Request) -> portside.Response:
        response: portside.Response = connection.respond(302, "x")
        response.headers["Location"] = "/a"
        response.headers["Location"] = "/b"
        return response

    async with running(process_request=redirect) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server))
        assert info.value.response.headers.get_all("Location") == ["/a", "/b"]


async def test_open_timeout() -> None:
    # A TCP server that never answers the handshake.
    writers: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        # The built-in TimeoutError (asyncio's is another class on 3.10).
        with pytest.raises(TimeoutError):
            await portside.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.05)
    finally:
        for writer in writers:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_server_closing_during_handshake() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(portside.InvalidMessage, match="closed"):
            await portside.connect(f"ws://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()


async def test_response_ending_with_the_connection() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\n\r\ncome back later")
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(f"ws://127.0.0.1:{port}/")
        assert info.value.response.body == b"come back later"
    finally:
        server.close()
        await server.wait_closed()


async def test_invalid_uri() -> None:
    with pytest.raises(portside.InvalidURI):
        portside.connect("http://example.com/")


async def test_ssl_for_ws_uri_is_an_error() -> None:
    async with running() as server:
        with pytest.raises(portside.InvalidURI, match="ssl was given"):
            await portside.connect(url(server), ssl=ssl.create_default_context())


async def test_wss_verifies_certificates_by_default() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT)
    async with running(ssl=context) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            await portside.connect(f"wss://localhost:{port}/")


async def test_extra_headers_aliases() -> None:
    seen: list[str] = []

    def record(connection: Any, request: portside.Request) -> None:
        seen.append(request.headers["X-A"])

    async with running(process_request=record) as server:
        async with portside.connect(url(server), additional_headers={"X-A": "1"}):
            pass
        async with portside.connect(url(server), extra_headers=[("X-A", "2")]):
            pass
        with pytest.raises(TypeError, match="not both"):
            portside.connect(url(server), extra_headers={}, additional_headers={})
    assert seen == ["1", "2"]


async def test_connect_on_an_existing_socket() -> None:
    async with running() as server:
        sock = socket.create_connection(server.sockets[0].getsockname()[:2])
        async with portside.connect("ws://localhost/", sock=sock) as ws:
            await ws.send("sock")
            assert await ws.recv() == "sock"


async def test_client_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        portside.connect("ws://localhost/", max_queue=0)
    with pytest.raises(ValueError, match="open_timeout"):
        portside.connect("ws://localhost/", open_timeout=-1)


async def test_compression_can_be_disabled_on_either_side() -> None:
    for server_compression, client_compression in (("deflate", None), (None, "deflate")):
        async with running(compression=server_compression) as server:
            async with portside.connect(url(server), compression=client_compression) as ws:
                assert "Sec-WebSocket-Extensions" not in ws.response_headers
                await ws.send("x" * 1000)
                assert await ws.recv() == "x" * 1000


async def test_compression_settings() -> None:
    deflate = portside.Deflate(server_max_window_bits=10, client_max_window_bits=9, mem_level=4)
    async with running(compression=deflate) as server:
        async with portside.connect(url(server), compression=portside.Deflate()) as ws:
            value = ws.response_headers["Sec-WebSocket-Extensions"]
            assert (
                value == "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"
            )
            for message in ("x" * 10_000, bytes(range(256)) * 100):
                await ws.send(message)
                assert await ws.recv() == message


async def test_echo_handler_helper_is_used() -> None:
    # Keeps tests.asyncio.helpers.echo covered when run alone.
    async with portside.serve(echo, "127.0.0.1", 0) as server:
        async with portside.connect(url(server)) as ws:
            await ws.send(b"")
            assert await ws.recv() == b""
