"""route() and unix_route() on werkzeug URL maps, over real sockets."""

from __future__ import annotations

import http
import pathlib
import tempfile
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

import portside
from portside.asyncio.router import Router, route, unix_route


async def lobby(ws: portside.ServerConnection) -> None:
    await ws.send("lobby")


async def room(ws: portside.ServerConnection, name: str, number: int) -> None:
    await ws.send(f"room {name} {number} {ws.request.path if ws.request else ''}")


def url_map() -> Map:
    return Map(
        [
            Rule("/", endpoint=lobby),
            Rule("/room/<name>/<int:number>/", endpoint=room),
            Rule("/old", redirect_to="/"),
        ]
    )


def base(server: portside.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}"


async def test_each_path_to_its_handler_with_kwargs() -> None:
    async with route(url_map(), "127.0.0.1", 0, ping_interval=None) as server:
        async with portside.connect(base(server) + "/") as ws:
            assert await ws.recv() == "lobby"
        async with portside.connect(base(server) + "/room/blue/7/?x=1") as ws:
            assert await ws.recv() == "room blue 7 /room/blue/7/?x=1"


async def test_unknown_path_is_404() -> None:
    async with route(url_map(), "127.0.0.1", 0) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(base(server) + "/nowhere")
    assert info.value.response.status_code == 404


async def test_redirects_are_301_and_followed() -> None:
    async with route(url_map(), "127.0.0.1", 0) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(base(server) + "/room/blue/7", follow_redirects=False)
        response = info.value.response
        assert response.status_code == 301
        assert response.headers["Location"] == base(server) + "/room/blue/7/"
        async with portside.connect(base(server) + "/old") as ws:
            assert await ws.recv() == "lobby"


async def test_server_name_and_ssl_true_for_a_reverse_proxy() -> None:
    async with route(url_map(), "127.0.0.1", 0, server_name="example.com", ssl=True) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(base(server) + "/old", follow_redirects=False)
    assert info.value.response.headers["Location"] == "wss://example.com/"


@pytest.mark.parametrize("legacy", [False, True])
async def test_process_request_runs_first(legacy: bool) -> None:
    def health(connection: portside.ServerConnection, request: portside.Request) -> object:
        if request.path == "/health":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    def legacy_health(path: str, request_headers: portside.Headers) -> object:
        return (200, [], b"OK\n") if path == "/health" else None

    async with route(
        url_map(), "127.0.0.1", 0, process_request=legacy_health if legacy else health
    ) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(base(server) + "/health")
        assert info.value.response.status_code == 200
        async with portside.connect(base(server) + "/") as ws:
            assert await ws.recv() == "lobby"


async def test_async_process_request_and_custom_router() -> None:
    class Teapot(Router):
        def not_found(self, connection: Any) -> portside.Response:
            response: portside.Response = connection.respond(http.HTTPStatus.IM_A_TEAPOT, "no\n")
            return response

    async def nothing(connection: object, request: object) -> None:
        return None

    async with route(
        url_map(), "127.0.0.1", 0, process_request=nothing, create_router=Teapot
    ) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(base(server) + "/nowhere")
    assert info.value.response.status_code == 418


async def test_unix_route() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = str(pathlib.Path(directory) / "socket")
        async with unix_route(url_map(), path):
            async with portside.unix_connect(path, "ws://localhost/room/x/1/") as ws:
                assert str(await ws.recv()).startswith("room x 1")
            with pytest.raises(portside.InvalidStatus):
                await portside.unix_connect(path, "ws://localhost/nowhere")
