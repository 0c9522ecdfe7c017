from __future__ import annotations

import pytest

from portside.exceptions import InvalidUTF8, ProtocolError
from portside.protocol.close import Close, CloseCode, is_valid_close_code


def test_parse_and_serialize_round_trip() -> None:
    close = Close(1001, "going away ☕")
    assert Close.parse(close.serialize()) == close


def test_empty_payload_means_1005() -> None:
    assert Close.parse(b"") == Close(1005)
    assert Close(1005).serialize() == b""


def test_one_byte_payload_is_invalid() -> None:
    with pytest.raises(ProtocolError, match="too short"):
        Close.parse(b"\x03")


def test_invalid_reason() -> None:
    with pytest.raises(InvalidUTF8):
        Close.parse(b"\x03\xe8\xc3")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2999, 5000, 65535])
def test_codes_that_may_not_be_sent(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError):
        Close.parse(code.to_bytes(2, "big"))


@pytest.mark.parametrize("code", [*range(1000, 1004), *range(1007, 1015), 3000, 3999, 4000, 4999])
def test_codes_that_may_be_sent(code: int) -> None:
    assert is_valid_close_code(code)


def test_serialize_rejects_invalid_code() -> None:
    with pytest.raises(ProtocolError, match="invalid close code"):
        Close(1006).serialize()


def test_serialize_rejects_long_reason() -> None:
    assert len(Close(1000, "x" * 123).serialize()) == 125
    with pytest.raises(ProtocolError, match="123 bytes"):
        Close(1000, "x" * 124).serialize()


@pytest.mark.parametrize(
    ("close", "text"),
    [
        (Close(1000), "1000 (OK)"),
        (Close(1001, "bye"), "1001 (going away) bye"),
        (Close(3000), "3000 (registered)"),
        (Close(4000), "4000 (private use)"),
        (Close(2000), "2000 (unknown)"),
    ],
)
def test_str(close: Close, text: str) -> None:
    assert str(close) == text


def test_close_code_enum() -> None:
    assert CloseCode.GOING_AWAY == 1001
    assert Close(CloseCode.MESSAGE_TOO_BIG).code == 1009
