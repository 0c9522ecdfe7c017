from __future__ import annotations

import pytest

from portside.exceptions import InvalidURI
from portside.protocol.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/")),
        ("ws://localhost", WebSocketURI(False, "localhost", 80, "/")),
        (
            "wss://example.com:8443/chat?room=1",
            WebSocketURI(True, "example.com", 8443, "/chat?room=1"),
        ),
        ("ws://[::1]:9000/", WebSocketURI(False, "::1", 9000, "/")),
        ("ws://u:p%40ss@host/", WebSocketURI(False, "host", 80, "/", ("u", "p@ss"))),
        ("ws://host/a b", WebSocketURI(False, "host", 80, "/a%20b")),
    ],
)
def test_parse(uri: str, parsed: WebSocketURI) -> None:
    assert parse_uri(uri) == parsed


@pytest.mark.parametrize(
    "uri",
    ["http://host/", "ws:///path", "ws://host/#frag", "ws://host:99999/", "wss://host:x/", "host"],
)
def test_invalid(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        # RFC 7617 2: Basic credentials need a password, and a user-id without ':'.
        ("ws://user@host/", "username provided without password"),
        ("ws://a%3Ab:c@host/", "username contains ':'"),
        ("ws://u:%ff@host/", "credentials aren't UTF-8"),
    ],
)
def test_invalid_user_info(uri: str, error: str) -> None:
    with pytest.raises(InvalidURI, match=error):
        parse_uri(uri)


def test_empty_password() -> None:
    assert parse_uri("ws://u:@host/").user_info == ("u", "")


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("ws://h/", "h"),
        ("ws://h:80/", "h"),
        ("ws://h:81/", "h:81"),
        ("wss://h:443/", "h"),
        ("wss://h:80/", "h:80"),
        ("ws://[::1]:81/", "[::1]:81"),
    ],
)
def test_host_header(uri: str, host: str) -> None:
    assert parse_uri(uri).host_header == host


def test_invalid_uri_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="isn't a valid URI"):
        parse_uri("ftp://x/")
