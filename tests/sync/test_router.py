"""Routing threading servers by path with werkzeug: route() and unix_route()."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

from portside.exceptions import InvalidStatus
from portside.protocol.http11 import Request, Response
from portside.sync.client import connect, unix_connect
from portside.sync.router import Router, route, unix_route
from portside.sync.server import Server, ServerConnection
from tests.sync.helpers import TIMEOUT, serving, url


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def room(ws: ServerConnection, name: str, number: int) -> None:
    ws.send(f"{name} {number}")


URL_MAP = Map(
    [
        Rule("/echo", endpoint=echo),
        Rule("/room/<name>/<int:number>", endpoint=room),
        Rule("/old", redirect_to="/echo", endpoint=echo),
        Rule("/folder/", endpoint=echo),
    ]
)


def routed(**kwargs: Any) -> contextlib.AbstractContextManager[Server]:
    return serving(route(URL_MAP, "127.0.0.1", 0, ping_interval=None, **kwargs))


def test_paths_go_to_their_handlers_with_the_url_values() -> None:
    with routed() as server:
        with connect(url(server, "/echo")) as ws:
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
        with connect(url(server, "/room/blue/42")) as ws:
            assert ws.recv(timeout=TIMEOUT) == "blue 42"


def test_unknown_paths_get_404() -> None:
    with routed() as server, pytest.raises(InvalidStatus) as raised:
        connect(url(server, "/nowhere"))
    assert raised.value.response.status_code == 404


def test_redirects_are_301_and_followed() -> None:
    with routed() as server:
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server, "/old"), follow_redirects=False)
        response = raised.value.response
        assert response.status_code == 301
        host, port = server.socket.getsockname()[:2]
        assert response.headers["Location"] == f"ws://{host}:{port}/echo"
        with connect(url(server, "/folder")) as ws:
            assert ws.request is not None and ws.request.path == "/folder/"


def test_server_name_and_ssl_true_shape_redirects() -> None:
    with routed(server_name="example.com", ssl=True) as server:
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server, "/old"), follow_redirects=False)
    assert raised.value.response.headers["Location"] == "wss://example.com/echo"


def test_process_request_runs_first() -> None:
    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(200, "OK\n")
        return None

    with routed(process_request=health) as server:
        with pytest.raises(InvalidStatus) as raised:
            connect(url(server, "/healthz"))
        assert raised.value.response.status_code == 200
        with connect(url(server, "/echo")) as ws:
            ws.send("routed after")
            assert ws.recv(timeout=TIMEOUT) == "routed after"


def test_custom_router() -> None:
    class Teapot(Router):
        def not_found(self, connection: Any) -> Response:
            response: Response = connection.respond(418, "I'm a teapot\n")
            return response

    with routed(create_router=Teapot) as server, pytest.raises(InvalidStatus) as raised:
        connect(url(server, "/nowhere"))
    assert raised.value.response.status_code == 418


def test_unix_route() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        with serving(unix_route(URL_MAP, path, ping_interval=None)):
            with unix_connect(path, "ws://localhost/room/red/7") as ws:
                assert ws.recv(timeout=TIMEOUT) == "red 7"
