from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable

import pytest

from portside.exceptions import InvalidHeaderFormat, InvalidHeaderValue
from portside.protocol.auth import (
    INVALID_CREDENTIALS,
    MISSING_CREDENTIALS,
    UNSUPPORTED_CREDENTIALS,
    BasicAuth,
    build_authorization_basic,
    build_www_authenticate_basic,
    check_credentials_in,
    parse_authorization_basic,
)
from portside.protocol.headers import Headers
from portside.protocol.http11 import Request, Response


def test_build_authorization_basic() -> None:
    # RFC 7617 2's example.
    assert build_authorization_basic("Aladdin", "open sesame") == (
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    )


def test_build_authorization_basic_utf8_and_surrogates() -> None:
    value = build_authorization_basic("é", "\udcff")
    assert base64.b64decode(value[6:]) == b"\xc3\xa9:\xff"


def test_username_with_colon_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot contain ':'"):
        build_authorization_basic("a:b", "c")


@pytest.mark.parametrize(
    ("header", "credentials"),
    [
        ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", ("Aladdin", "open sesame")),
        ("basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", ("Aladdin", "open sesame")),
        ("BASIC   QWxhZGRpbjpvcGVuIHNlc2FtZQ==", ("Aladdin", "open sesame")),
        ("Basic " + base64.b64encode(b"u:p:q").decode(), ("u", "p:q")),
        ("Basic " + base64.b64encode(b":").decode(), ("", "")),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), ("\udcff", "x")),
    ],
)
def test_parse_authorization_basic(header: str, credentials: tuple[str, str]) -> None:
    assert parse_authorization_basic(header) == credentials


@pytest.mark.parametrize(
    ("header", "error", "text"),
    [
        ("Basic", InvalidHeaderFormat, "expected scheme and credentials"),
        ("", InvalidHeaderFormat, "expected scheme and credentials"),
        ("Bearer abc", InvalidHeaderValue, "unsupported scheme: Bearer"),
        ("Basic abc def", InvalidHeaderFormat, "expected token68"),
        ("Basic a=b", InvalidHeaderFormat, "expected token68"),
        ("Basic abc", InvalidHeaderValue, "expected base64"),
        ("Basic " + base64.b64encode(b"nocolon").decode(), InvalidHeaderValue, "username:password"),
    ],
)
def test_parse_invalid_authorization(header: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        parse_authorization_basic(header)


def test_build_www_authenticate_basic() -> None:
    assert build_www_authenticate_basic("my dev server") == (
        'Basic realm="my dev server", charset="UTF-8"'
    )
    assert build_www_authenticate_basic('a "b" \\c') == (
        'Basic realm="a \\"b\\" \\\\c", charset="UTF-8"'
    )


def test_realm_with_control_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="realm cannot be sent"):
        build_www_authenticate_basic("a\r\nSet-Cookie: x")


def test_check_credentials_in() -> None:
    check = check_credentials_in([("alice", "pw1"), ("bob", "pw2"), ("bob", "pw3")])
    assert check("alice", "pw1")
    assert not check("alice", "pw2")
    assert not check("carol", "pw1")
    assert not check("bob", "pw2")  # the last password listed counts
    assert check("bob", "pw3")
    assert not check("alice", "pw1 ")


def test_check_credentials_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    check = check_credentials_in([("alice", "secret")])
    check("alice", "guess")
    check("mallory", "guess")
    # One constant-time comparison whether or not the user exists.
    assert calls == [(b"secret", b"guess"), (b"guess", b"guess")]


def request(*authorization: str) -> Request:
    return Request("/", Headers([("Host", "h"), *(("Authorization", a) for a in authorization)]))


@pytest.mark.parametrize(
    ("credentials"),
    [("user", "pw"), [("user", "pw")], (("user", "pw"), ("other", "x")), iter([("user", "pw")])],
)
def test_basic_auth_from_credentials(credentials: Iterable[tuple[str, str]]) -> None:
    auth = BasicAuth("realm", credentials=credentials)
    assert auth.check_credentials("user", "pw") is True
    assert auth.check_credentials("user", "no") is False


def test_basic_auth_from_check_credentials() -> None:
    auth = BasicAuth(check_credentials=lambda user, password: user == password)
    assert auth.check_credentials("a", "a")
    assert auth.realm == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({}, ValueError, "provide either credentials or check_credentials"),
        (
            {"credentials": ("a", "b"), "check_credentials": lambda u, p: True},
            ValueError,
            "provide either",
        ),
        ({"credentials": "ab"}, TypeError, "invalid credentials argument"),
        ({"credentials": ("a", 1)}, TypeError, "invalid credentials argument"),
        ({"credentials": [("a", "b"), ("c",)]}, TypeError, "invalid credentials argument"),
        ({"credentials": 42}, TypeError, "invalid credentials argument"),
        ({"check_credentials": "yes"}, TypeError, "must be callable"),
        ({"realm": "\x00", "credentials": ("a", "b")}, ValueError, "realm"),
    ],
)
def test_basic_auth_configuration_errors(
    kwargs: dict[str, object], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        BasicAuth(**kwargs)  # type: ignore[arg-type]


def test_request_credentials() -> None:
    auth = BasicAuth(credentials=("u", "p"))
    assert auth.request_credentials(request(build_authorization_basic("u", "x"))) == ("u", "x")
    assert auth.request_credentials(request()) == MISSING_CREDENTIALS
    assert auth.request_credentials(request("Bearer t")) == UNSUPPORTED_CREDENTIALS
    assert auth.request_credentials(request("Basic !!")) == UNSUPPORTED_CREDENTIALS
    two = build_authorization_basic("u", "p")
    assert auth.request_credentials(request(two, two)) == UNSUPPORTED_CREDENTIALS
    assert INVALID_CREDENTIALS == "Invalid credentials\n"


def test_challenge() -> None:
    auth = BasicAuth("zone", credentials=("u", "p"))
    response = Response(401, "Unauthorized", Headers())
    assert auth.challenge(response) is response
    assert response.headers["WWW-Authenticate"] == 'Basic realm="zone", charset="UTF-8"'
