from __future__ import annotations

import pytest

from portside.exceptions import (
    InvalidHeader,
    InvalidHeaderValue,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from portside.protocol import ClientProtocol, Deflate, Headers, Response, ServerProtocol, State
from portside.protocol.handshake import accept_key
from portside.protocol.uri import parse_uri
from tests.framing import server_frame


def make_client(**kwargs: object) -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://user:pw@example.com:8080/chat?x=1"), **kwargs)  # type: ignore[arg-type]


def test_request() -> None:
    client = make_client(
        origin="https://example.com",
        extra_headers={"X-Token": "t"},
        subprotocols=["chat", "v2"],
        user_agent_header="test-agent",
    )
    request = client.connect()
    headers = request.headers
    assert request.path == "/chat?x=1"
    assert headers["Host"] == "example.com:8080"
    assert headers["Authorization"] == "Basic dXNlcjpwdw=="
    assert headers["Origin"] == "https://example.com"
    assert headers["Sec-WebSocket-Version"] == "13"
    assert headers["Sec-WebSocket-Protocol"] == "chat, v2"
    assert headers["X-Token"] == "t"
    assert headers["User-Agent"] == "test-agent"
    assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    assert client.send_request(request).startswith(b"GET /chat?x=1 HTTP/1.1\r\n")


def test_user_agent_from_extra_headers_wins() -> None:
    client = make_client(extra_headers=[("User-Agent", "mine")], user_agent_header="default")
    assert client.connect().headers.get_all("User-Agent") == ["mine"]


def handshake(client: ClientProtocol, server: ServerProtocol) -> Response:
    request = server.receive_request(client.send_request(client.connect()))
    assert request is not None
    return server.accept(request)


def test_full_handshake_with_compression_and_early_frame() -> None:
    client = make_client(subprotocols=["chat"])
    server = ServerProtocol(subprotocols=["chat"])
    response = handshake(client, server)
    data = server.send_response(response) + server_frame(1, b"hi")
    parsed = client.receive_response(data[:20])
    assert parsed is None
    parsed = client.receive_response(data[20:])
    assert parsed is not None
    client.process_response(parsed)
    assert client.state is State.OPEN
    assert client.subprotocol == "chat"
    assert client.deflate is not None
    assert client.receive_data(client.rest) == ["hi"]


def accepted(client: ClientProtocol, **changes: str | None) -> Response:
    key = client.connect().headers["Sec-WebSocket-Key"]
    headers = Headers(
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept_key(key)}
    )
    for name, value in changes.items():
        name = name.replace("_", "-")
        if name in headers:
            del headers[name]
        if value is not None:
            headers[name] = value
    return Response(101, "Switching Protocols", headers)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"Upgrade": None}, InvalidUpgrade),
        ({"Upgrade": "websocket, h2c"}, InvalidUpgrade),
        ({"Connection": "close"}, InvalidUpgrade),
        ({"Sec-WebSocket-Accept": None}, InvalidHeader),
        ({"Sec-WebSocket-Accept": "wrong"}, InvalidHeaderValue),
        ({"Sec-WebSocket-Extensions": "x-unknown"}, NegotiationError),
        ({"Sec-WebSocket-Extensions": "permessage-deflate; foo"}, NegotiationError),
        ({"Sec-WebSocket-Protocol": "chat"}, NegotiationError),
    ],
)
def test_invalid_responses(changes: dict[str, str | None], error: type[Exception]) -> None:
    client = make_client()
    with pytest.raises(error):
        client.process_response(accepted(client, **changes))
    assert client.state is State.CLOSED
    assert isinstance(client.handshake_exc, error)


def test_repeated_accept_header() -> None:
    client = make_client()
    response = accepted(client)
    response.headers["Sec-WebSocket-Accept"] = "again"
    with pytest.raises(InvalidHeader, match="multiple values"):
        client.process_response(response)


def test_extension_not_offered() -> None:
    client = make_client(compression=None)
    response = accepted(client, **{"Sec-WebSocket-Extensions": "permessage-deflate"})
    with pytest.raises(NegotiationError, match="not offered"):
        client.process_response(response)


def test_two_extensions_accepted() -> None:
    client = make_client(compression=Deflate(server_max_window_bits=None))
    value = "permessage-deflate, permessage-deflate"
    with pytest.raises(NegotiationError, match="unsupported extensions"):
        client.process_response(accepted(client, **{"Sec-WebSocket-Extensions": value}))


def test_two_subprotocols_accepted() -> None:
    client = make_client(subprotocols=["a", "b"])
    with pytest.raises(InvalidHeader):
        client.process_response(accepted(client, **{"Sec-WebSocket-Protocol": "a, b"}))


def test_refused() -> None:
    client = make_client()
    client.connect()
    response = client.receive_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    assert response is not None
    with pytest.raises(InvalidStatus) as info:
        client.process_response(response)
    assert info.value.response.body == b"no"
    assert "HTTP 403" in str(info.value)


def test_response_until_eof() -> None:
    client = make_client()
    client.connect()
    assert client.receive_response(b"HTTP/1.1 500 Oops\r\n\r\nbody") is None
    assert client.receive_response_eof().body == b"body"
