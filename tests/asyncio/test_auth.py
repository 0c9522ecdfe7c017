"""basic_auth() on a real server, with portside's and websockets' clients."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import InvalidStatus as WebsocketsInvalidStatus

import portside
from portside.asyncio.server import basic_auth
from tests.asyncio.helpers import running, url


async def whoami(ws: portside.ServerConnection) -> None:
    await ws.send(f"hello {ws.username}")


def with_user(server: portside.Server, user_info: str) -> str:
    return url(server).replace("ws://", f"ws://{user_info}@")


async def test_valid_credentials_in_the_uri() -> None:
    auth = basic_auth(realm="test", credentials=[("alice", "s3cret"), ("bob", "pw")])
    async with running(whoami, process_request=auth) as server:
        async with portside.connect(with_user(server, "alice:s3cret")) as ws:
            assert await ws.recv() == "hello alice"
        async with websockets_connect(with_user(server, "bob:pw")) as theirs:
            assert await theirs.recv() == "hello bob"


@pytest.mark.parametrize(
    ("user_info", "body"),
    [
        (None, b"Missing credentials\n"),
        ("alice:wrong", b"Invalid credentials\n"),
        ("mallory:s3cret", b"Invalid credentials\n"),
    ],
)
async def test_refused_with_401_and_a_challenge(user_info: str | None, body: bytes) -> None:
    auth = basic_auth(realm="my dev server", credentials=("alice", "s3cret"))
    async with running(whoami, process_request=auth) as server:
        target = url(server) if user_info is None else with_user(server, user_info)
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(target)
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="my dev server", charset="UTF-8"'
    assert response.body == body


async def test_unsupported_scheme() -> None:
    auth = basic_auth(credentials=("a", "b"))
    async with running(whoami, process_request=auth) as server:
        with pytest.raises(portside.InvalidStatus) as info:
            await portside.connect(url(server), additional_headers={"Authorization": "Bearer t"})
    assert info.value.response.body == b"Unsupported credentials\n"


async def test_websockets_client_gets_401() -> None:
    auth = basic_auth(credentials=("a", "b"))
    async with running(whoami, process_request=auth) as server:
        with pytest.raises(WebsocketsInvalidStatus) as info:
            await websockets_connect(with_user(server, "a:c"))
    assert info.value.response.status_code == 401


@pytest.mark.parametrize("coroutine", [False, True])
async def test_check_credentials(coroutine: bool) -> None:
    seen: list[tuple[str, str]] = []

    def check(username: str, password: str) -> bool:
        seen.append((username, password))
        return password == username[::-1]

    async def acheck(username: str, password: str) -> bool:
        await asyncio.sleep(0)
        return check(username, password)

    auth = basic_auth(check_credentials=acheck if coroutine else check)
    async with running(whoami, process_request=auth) as server:
        async with portside.connect(with_user(server, "abc:cba")) as ws:
            assert await ws.recv() == "hello abc"
        with pytest.raises(portside.InvalidStatus):
            await portside.connect(with_user(server, "abc:abc"))
    assert seen == [("abc", "cba"), ("abc", "abc")]


async def test_username_is_none_without_auth() -> None:
    async with running(whoami) as server, portside.connect(url(server)) as ws:
        assert await ws.recv() == "hello None"


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="provide either credentials or check_credentials"):
        basic_auth()
    with pytest.raises(TypeError, match="invalid credentials argument"):
        basic_auth(credentials="alice")  # type: ignore[arg-type]
