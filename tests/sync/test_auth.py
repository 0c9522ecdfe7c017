"""HTTP Basic authentication for threading servers, against portside's and websockets' clients."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from portside.exceptions import InvalidStatus
from portside.sync.client import connect
from portside.sync.server import Server, ServerConnection, basic_auth
from tests.sync.helpers import TIMEOUT, RawClient, running, websockets_sync_client


def whoami(ws: ServerConnection) -> None:
    ws.send(ws.username)


@pytest.fixture
def server() -> Iterator[Server]:
    with running(
        whoami, process_request=basic_auth(realm="test", credentials=[("alice", "s3cr3t")])
    ) as server:
        yield server


def address(server: Server, user_info: str = "") -> str:
    host, port = server.socket.getsockname()[:2]
    return f"ws://{user_info}{host}:{port}/"


def test_valid_credentials_set_the_username(server: Server) -> None:
    with connect(address(server, "alice:s3cr3t@")) as ws:
        assert ws.recv(timeout=TIMEOUT) == "alice"
    with websockets_sync_client(address(server, "alice:s3cr3t@")) as ws:
        assert ws.recv(timeout=TIMEOUT) == "alice"


@pytest.mark.parametrize(
    ("user_info", "body"),
    [
        ("", b"Missing credentials\n"),
        ("alice:wrong@", b"Invalid credentials\n"),
        ("bob:s3cr3t@", b"Invalid credentials\n"),
    ],
)
def test_refusals_are_401_with_a_challenge(server: Server, user_info: str, body: bytes) -> None:
    with pytest.raises(InvalidStatus) as raised:
        connect(address(server, user_info))
    response = raised.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="test", charset="UTF-8"'
    assert response.body == body


def test_unsupported_credentials(server: Server) -> None:
    token = base64.b64encode(b"alice:s3cr3t").decode()
    raw = RawClient.connect(server, handshake=False)
    with raw:
        raw.send(f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        data = raw.read_all()
    assert data.startswith(b"HTTP/1.1 401")
    assert data.endswith(b"Unsupported credentials\n")


def test_check_credentials() -> None:
    def check(username: str, password: str) -> bool:
        return password == username[::-1]

    with running(whoami, process_request=basic_auth(check_credentials=check)) as server:
        with connect(address(server, "abc:cba@")) as ws:
            assert ws.recv(timeout=TIMEOUT) == "abc"
        with pytest.raises(InvalidStatus):
            connect(address(server, "abc:abc@"))


def test_check_credentials_returning_an_awaitable_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def coroutine() -> bool:
        return True

    def check(username: str, password: str) -> bool:
        return coroutine()  # type: ignore[return-value]

    with running(whoami, process_request=basic_auth(check_credentials=check)) as server:
        with pytest.raises(InvalidStatus) as raised:
            connect(address(server, "a:b@"))
    assert raised.value.response.status_code == 500
    assert "process_request failed" in caplog.text


def test_arguments() -> None:
    async def check(username: str, password: str) -> bool:
        return True

    with pytest.raises(TypeError, match="plain function"):
        basic_auth(check_credentials=check)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either credentials or check_credentials"):
        basic_auth()
    with pytest.raises(TypeError, match="invalid credentials"):
        basic_auth(credentials=("alice",))  # type: ignore[arg-type]
    assert callable(basic_auth(credentials=("alice", "pw")))
