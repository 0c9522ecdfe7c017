from __future__ import annotations

import pytest

from portside.exceptions import InvalidHeaderFormat
from portside.protocol.headers import (
    Headers,
    MultipleValuesError,
    build_extension_list,
    parse_extension_list,
    parse_subprotocol_list,
    parse_token_list,
    parse_upgrade_list,
)


def test_case_insensitive_access() -> None:
    headers = Headers({"Content-Type": "text/plain"})
    assert headers["content-type"] == "text/plain"
    assert "CONTENT-TYPE" in headers
    assert 42 not in headers


def test_setting_adds_a_header() -> None:
    headers = Headers()
    headers["Set-Cookie"] = "a=1"
    headers["set-cookie"] = "b=2"
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    with pytest.raises(MultipleValuesError):
        headers["Set-Cookie"]
    assert len(headers) == 1
    assert list(headers) == ["set-cookie"]


def test_missing_header() -> None:
    headers = Headers()
    with pytest.raises(KeyError):
        headers["Host"]
    assert headers.get("Host") is None
    with pytest.raises(KeyError):
        del headers["Host"]


def test_delete_removes_every_value() -> None:
    headers = Headers([("A", "1"), ("a", "2"), ("B", "3")])
    del headers["A"]
    assert list(headers.raw_items()) == [("B", "3")]


def test_constructors_and_update() -> None:
    headers = Headers([("A", "1")], B="2")
    headers.update(Headers({"C": "3"}))
    assert list(headers.raw_items()) == [("A", "1"), ("B", "2"), ("C", "3")]
    assert headers == Headers({"a": "1", "b": "2", "c": "3"})
    assert headers != Headers({"a": "1"})
    assert headers.__eq__(object()) is NotImplemented


def test_copy_is_independent() -> None:
    headers = Headers({"A": "1"})
    copy = headers.copy()
    copy["B"] = "2"
    assert "B" not in headers


def test_str_and_repr() -> None:
    headers = Headers([("Host", "x"), ("Upgrade", "websocket")])
    assert str(headers) == "Host: x\r\nUpgrade: websocket\r\n\r\n"
    assert repr(headers) == "Headers([('Host', 'x'), ('Upgrade', 'websocket')])"
    headers.clear()
    assert str(headers) == "\r\n"


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("Upgrade", ["Upgrade"]),
        ("keep-alive, Upgrade", ["keep-alive", "Upgrade"]),
        (" ,, a ,b,, ", ["a", "b"]),
        ("", []),
    ],
)
def test_token_list(value: str, tokens: list[str]) -> None:
    assert parse_token_list(value) == tokens


@pytest.mark.parametrize("value", ["a b", "a;", "(x)", 'a, "b"'])
def test_invalid_token_list(value: str) -> None:
    with pytest.raises(InvalidHeaderFormat):
        parse_token_list(value, "Connection")


def test_upgrade_list_with_versions() -> None:
    assert parse_upgrade_list("websocket, HTTP/2.0") == ["websocket", "HTTP/2.0"]
    with pytest.raises(InvalidHeaderFormat):
        parse_upgrade_list("websocket/")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("permessage-deflate", [("permessage-deflate", [])]),
        (
            "permessage-deflate; client_max_window_bits",
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            'permessage-deflate ; server_max_window_bits = "10", x-ext',
            [("permessage-deflate", [("server_max_window_bits", "10")]), ("x-ext", [])],
        ),
        ("a;b=1;c=2", [("a", [("b", "1"), ("c", "2")])]),
    ],
)
def test_extension_list(value: str, parsed: list[tuple[str, list[tuple[str, str | None]]]]) -> None:
    assert parse_extension_list(value) == parsed


@pytest.mark.parametrize("value", ['a; b="x y"', 'a; b="unterminated', "a; =1", "a; b=", ";a"])
def test_invalid_extension_list(value: str) -> None:
    with pytest.raises(InvalidHeaderFormat):
        parse_extension_list(value)


def test_quoted_escapes_are_unquoted() -> None:
    assert parse_extension_list('a; b="1\\2"') == [("a", [("b", "12")])]


def test_build_extension_list() -> None:
    value = build_extension_list(
        [
            (
                "permessage-deflate",
                [("client_max_window_bits", None), ("server_max_window_bits", "10")],
            )
        ]
    )
    assert value == "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
    assert parse_extension_list(value)[0][1][1] == ("server_max_window_bits", "10")


def test_subprotocol_list() -> None:
    assert parse_subprotocol_list("chat, superchat") == ["chat", "superchat"]


def test_lookups_see_every_change() -> None:
    headers = Headers([("Host", "a")])
    assert headers.get_all("host") == ["a"]
    headers["HOST"] = "b"
    assert headers.get_all("Host") == ["a", "b"]
    del headers["host"]
    assert "Host" not in headers
    headers.update({"Host": "c"})
    assert headers["host"] == "c"
    headers.get_all("host").append("not stored")
    assert headers.get_all("host") == ["c"]
    headers.clear()
    assert headers.get_all("host") == []
