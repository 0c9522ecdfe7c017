from __future__ import annotations

import re

import pytest

from portside.exceptions import (
    InvalidMessage,
    InvalidMethod,
    InvalidOrigin,
    InvalidProtocol,
    InvalidUpgrade,
    InvalidVersion,
)
from portside.protocol import Deflate, Headers, Request, Response, ServerProtocol, State
from portside.protocol.handshake import accept_key
from tests.framing import client_frame

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(**changes: str | None) -> Request:
    fields: dict[str, str | None] = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update(changes)
    headers = Headers()
    for name, value in fields.items():
        if value is not None:
            headers[name.replace("_", "-")] = value
    return Request("/chat", headers)


def test_accept() -> None:
    server = ServerProtocol(server_header="test/1")
    response = server.accept(request())
    assert response.status_code == 101
    assert response.headers["Sec-WebSocket-Accept"] == accept_key(KEY)
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Connection"] == "Upgrade"
    assert response.headers["Server"] == "test/1"
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert server.state is State.CONNECTING
    data = server.send_response(response)
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert server.state is State.OPEN


def test_receive_request_in_pieces_keeps_the_rest() -> None:
    server = ServerProtocol()
    raw = request().serialize() + client_frame(1, b"early")
    assert server.receive_request(raw[:10]) is None
    parsed = server.receive_request(raw[10:])
    assert parsed is not None
    assert server.request is parsed
    server.send_response(server.accept(parsed))
    assert server.receive_data(server.rest) == ["early"]


def test_invalid_http_is_reported() -> None:
    server = ServerProtocol()
    with pytest.raises(InvalidMessage):
        server.receive_request(b"garbage\r\n\r\n")
    assert isinstance(server.handshake_exc, InvalidMessage)


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        ({"Host": None}, 400, "missing Host header"),
        ({"Upgrade": None}, 426, "missing Upgrade header"),
        ({"Upgrade": "h2c"}, 426, "invalid Upgrade header: h2c"),
        ({"Connection": "keep-alive"}, 426, "invalid Connection header"),
        ({"Sec-WebSocket-Key": None}, 400, "missing Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": "short"}, 400, "invalid Sec-WebSocket-Key header: short"),
        ({"Sec-WebSocket-Version": "8"}, 426, "invalid Sec-WebSocket-Version header: 8"),
        ({"Sec-WebSocket-Version": None}, 400, "missing Sec-WebSocket-Version"),
        ({"Upgrade": "web socket"}, 400, "expected comma"),
    ],
)
def test_invalid_handshakes(changes: dict[str, str | None], status: int, message: str) -> None:
    server = ServerProtocol()
    response = server.accept(request(**changes))
    assert response.status_code == status
    assert message in response.body.decode()
    assert response.headers["Connection"] == "close"
    assert response.headers["Content-Length"] == str(len(response.body))
    assert server.handshake_exc is not None
    server.send_response(response)
    assert server.state is State.CLOSED


def test_version_error_advertises_13() -> None:
    server = ServerProtocol()
    response = server.accept(request(**{"Sec-WebSocket-Version": "8"}))
    assert isinstance(server.handshake_exc, InvalidVersion)
    assert response.headers["Sec-WebSocket-Version"] == "13"


def test_upgrade_error_advertises_websocket() -> None:
    server = ServerProtocol()
    response = server.accept(request(Upgrade=None))
    assert isinstance(server.handshake_exc, InvalidUpgrade)
    assert response.headers["Upgrade"] == "websocket"


def test_method_not_allowed() -> None:
    server = ServerProtocol()
    req = request()
    req.method = "POST"
    response = server.accept(req)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert isinstance(server.handshake_exc, InvalidMethod)
    assert server.handshake_exc.method == "POST"


def http10_upgrade() -> bytes:
    """A WebSocket upgrade request, complete but for its version: HTTP/1.0."""
    return request().serialize().replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)


def test_an_http10_upgrade_is_refused_with_505() -> None:
    server = ServerProtocol()
    parsed = server.receive_request(http10_upgrade())
    assert parsed is not None
    assert parsed.http_version == "HTTP/1.0"
    response = server.accept(parsed)
    assert response.status_code == 505
    assert isinstance(server.handshake_exc, InvalidProtocol)
    assert server.handshake_exc.protocol == "HTTP/1.0"
    data = server.send_response(response)
    assert data.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert b"\r\nConnection: close\r\n" in data
    assert server.state is State.CLOSED


def test_an_http10_request_can_be_answered_with_http10_rules() -> None:
    # What process_request does for a health check: answer before accept().
    server = ServerProtocol()
    parsed = server.receive_request(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert parsed is not None
    answer = Response(
        200, "OK", Headers([("Transfer-Encoding", "chunked")]), b"2\r\nOK\r\n0\r\n\r\n"
    )
    data = server.send_response(answer)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 200 OK",
        b"Connection: close",
        b"Content-Length: 2",
    ]
    assert body == b"OK"
    assert server.response is not answer  # what was sent; the answer is left as it was
    assert server.response is not None and server.response.body == b"OK"
    assert answer.headers["Transfer-Encoding"] == "chunked"
    # The same answer to an HTTP/1.1 request goes as it is.
    other = ServerProtocol()
    assert other.receive_request(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n") is not None
    assert other.send_response(answer) == answer.serialize()
    assert other.response is answer


def test_repeated_key() -> None:
    server = ServerProtocol()
    req = request()
    req.headers["Sec-WebSocket-Key"] = KEY
    response = server.accept(req)
    assert response.status_code == 400
    assert "multiple values" in response.body.decode()


def test_connection_header_with_several_tokens() -> None:
    server = ServerProtocol()
    assert server.accept(request(Connection="keep-alive, Upgrade")).status_code == 101


@pytest.mark.parametrize(
    ("origins", "origin", "ok"),
    [
        (["https://a.example"], "https://a.example", True),
        (["https://a.example"], "https://b.example", False),
        (["https://a.example"], None, False),
        (["https://a.example", None], None, True),
        ([re.compile(r"https://.*\.example")], "https://b.example", True),
        ([re.compile(r"https://.*\.example")], "https://example.com", False),
        ([re.compile(r"https://.*\.example")], None, False),
    ],
)
def test_origins(origins: list[str | re.Pattern[str] | None], origin: str | None, ok: bool) -> None:
    server = ServerProtocol(origins=origins)
    response = server.accept(request(Origin=origin))
    if ok:
        assert response.status_code == 101
    else:
        assert response.status_code == 403
        assert isinstance(server.handshake_exc, InvalidOrigin)


def test_repeated_origin_is_refused() -> None:
    server = ServerProtocol(origins=["https://a.example"])
    req = request(Origin="https://a.example")
    req.headers["Origin"] = "https://a.example"
    assert server.accept(req).status_code == 400


def test_compression_negotiated() -> None:
    server = ServerProtocol(compression=Deflate())
    ext = "permessage-deflate; client_max_window_bits"
    response = server.accept(request(**{"Sec-WebSocket-Extensions": ext}))
    value = response.headers["Sec-WebSocket-Extensions"]
    assert value == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"
    assert server.deflate is None, "the codec is attached when the response is sent"
    server.send_response(response)
    assert server.deflate is not None


def test_compression_disabled_or_not_offered() -> None:
    server = ServerProtocol(compression=None)
    response = server.accept(request(**{"Sec-WebSocket-Extensions": "permessage-deflate"}))
    assert "Sec-WebSocket-Extensions" not in response.headers
    server = ServerProtocol()
    response = server.accept(request(**{"Sec-WebSocket-Extensions": "x-webkit-deflate-frame"}))
    assert "Sec-WebSocket-Extensions" not in response.headers


def test_offers_over_several_headers() -> None:
    server = ServerProtocol()
    req = request(**{"Sec-WebSocket-Extensions": "permessage-deflate; bogus"})
    req.headers["Sec-WebSocket-Extensions"] = "permessage-deflate; server_max_window_bits=10"
    response = server.accept(req)
    assert (
        response.headers["Sec-WebSocket-Extensions"]
        == "permessage-deflate; server_max_window_bits=10"
    )


@pytest.mark.parametrize(
    ("supported", "offered", "chosen"),
    [
        (["chat", "superchat"], "superchat, chat", "chat"),
        (["chat"], "other", None),
        (None, "chat", None),
        (["chat"], None, None),
    ],
)
def test_subprotocols(supported: list[str] | None, offered: str | None, chosen: str | None) -> None:
    server = ServerProtocol(subprotocols=supported)
    response = server.accept(request(**{"Sec-WebSocket-Protocol": offered}))
    assert response.status_code == 101
    assert response.headers.get("Sec-WebSocket-Protocol") == chosen
    assert server.subprotocol == chosen


def test_select_subprotocol() -> None:
    server = ServerProtocol(select_subprotocol=lambda offered: offered[-1])
    response = server.accept(request(**{"Sec-WebSocket-Protocol": "a, b"}))
    assert response.headers["Sec-WebSocket-Protocol"] == "b"


def test_select_subprotocol_must_pick_an_offer() -> None:
    server = ServerProtocol(select_subprotocol=lambda offered: "zzz")
    response = server.accept(request(**{"Sec-WebSocket-Protocol": "a"}))
    assert response.status_code == 400


def test_reject() -> None:
    server = ServerProtocol(server_header=None)
    response = server.reject(404, "Not here.\n")
    assert (response.status_code, response.reason_phrase) == (404, "Not Found")
    assert response.body == b"Not here.\n"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "Server" not in response.headers
