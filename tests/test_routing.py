"""The layer-neutral routing core, with a stand-in for a server connection."""

from __future__ import annotations

import http
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

import portside.routing
from portside.protocol.headers import Headers
from portside.protocol.http11 import Request, Response
from portside.protocol.server import ServerProtocol
from portside.routing import Router, require_werkzeug, url_scheme_for


class Connection:
    """What the router needs of a connection: respond(), and attributes to set."""

    handler: Any
    handler_kwargs: dict[str, Any]

    def respond(self, status: http.HTTPStatus | int, text: str) -> Response:
        return ServerProtocol().reject(status, text)


def chat(ws: object, room: str) -> None: ...


def home(ws: object) -> None: ...


URL_MAP = Map(
    [
        Rule("/", endpoint=home),
        Rule("/chat/<room>/", endpoint=chat),
        Rule("/old", redirect_to="/"),
        Rule("/admin", endpoint=home, methods=["POST"]),
    ]
)


def route(path: str, router: Router | None = None, host: str | None = "example.com:8000") -> Any:
    connection = Connection()
    headers = Headers() if host is None else Headers({"Host": host})
    result = (router or Router(URL_MAP)).route_request(connection, Request(path, headers))
    return result if result is not None else connection


def test_every_rule_becomes_a_websocket_rule() -> None:
    Router(URL_MAP)
    assert all(rule.websocket for rule in URL_MAP.iter_rules())


def test_match_sets_handler_and_kwargs() -> None:
    connection = route("/chat/lobby/?x=1")
    assert connection.handler is chat
    assert connection.handler_kwargs == {"room": "lobby"}
    assert route("/").handler is home


def test_unknown_path_is_404() -> None:
    response = route("/nowhere")
    assert response.status_code == 404
    assert response.body == b"Not Found\n"


def test_missing_slash_is_a_301_to_the_canonical_url() -> None:
    response = route("/chat/lobby?x=1")
    assert response.status_code == 301
    assert response.headers["Location"] == "ws://example.com:8000/chat/lobby/?x=1"


def test_redirect_to() -> None:
    response = route("/old")
    assert response.status_code == 301
    assert response.headers["Location"] == "ws://example.com:8000/"


def test_server_name_and_scheme_for_redirects() -> None:
    router = Router(URL_MAP, server_name="public.example", url_scheme=url_scheme_for(True))
    assert route("/old", router).headers["Location"] == "wss://public.example/"


def test_request_without_host() -> None:
    assert route("/old", host=None).headers["Location"] == "ws://localhost/"


def test_other_werkzeug_errors_keep_their_status() -> None:
    response = route("/admin")
    assert response.status_code == 405
    assert response.body == b"Method Not Allowed\n"


def test_url_scheme_for() -> None:
    assert url_scheme_for(None) == "ws"
    assert url_scheme_for(True) == "wss"
    assert url_scheme_for(object()) == "wss"


def test_missing_werkzeug_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "werkzeug.routing", None)
    with pytest.raises(ImportError, match=r"route\(\) requires werkzeug: pip install"):
        require_werkzeug("route")
    with pytest.raises(ImportError, match="requires werkzeug"):
        portside.routing.Router(URL_MAP)
