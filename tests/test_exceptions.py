from __future__ import annotations

import http
import inspect

import pytest

import portside.exceptions as exceptions
from portside.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    DuplicateParameter,
    HeaderLineTooLong,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidMethod,
    InvalidOrigin,
    InvalidParameterName,
    InvalidParameterValue,
    InvalidProtocol,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    ProtocolError,
    RequestLineTooLong,
    TooManyHeaders,
    WebSocketException,
)
from portside.protocol.close import Close
from portside.protocol.headers import Headers
from portside.protocol.http11 import Response


def test_every_exception_has_one_root() -> None:
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert inspect.isclass(cls)
        assert issubclass(cls, WebSocketException), name


def test_tree_in_docstring_lists_every_exception() -> None:
    assert exceptions.__doc__ is not None
    for name in exceptions.__all__:
        assert name in exceptions.__doc__, name


def test_stdlib_bases() -> None:
    assert issubclass(InvalidURI, ValueError)
    assert issubclass(InvalidProxy, ValueError)
    assert issubclass(ConcurrencyError, RuntimeError)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ConnectionClosed(None, None), "no close frame received or sent"),
        (ConnectionClosed(None, Close(1000)), "sent 1000 (OK); no close frame received"),
        (ConnectionClosed(Close(1001), None), "received 1001 (going away); no close frame sent"),
        (
            ConnectionClosedOK(Close(1000), Close(1000), True),
            "received 1000 (OK); then sent 1000 (OK)",
        ),
        (InvalidHeader("Host"), "missing Host header"),
        (InvalidHeader("Host", ""), "empty Host header"),
        (InvalidHeader("Host", "x y"), "invalid Host header: x y"),
        (
            InvalidHeaderFormat("X", "expected token", "a b", 1),
            "invalid X header: expected token at 1 in a b",
        ),
        (InvalidOrigin(None), "missing Origin header"),
        (InvalidURI("x", "bad"), "x isn't a valid URI: bad"),
        (InvalidProxy("x", "bad"), "x isn't a valid proxy: bad"),
        (
            InvalidProxyStatus(Response(407, "Proxy Authentication Required", Headers())),
            "proxy rejected connection: HTTP 407",
        ),
        (InvalidMethod("POST"), "unsupported HTTP method; expected GET; got POST"),
        (InvalidProtocol("HTTP/1.0"), "unsupported protocol; expected HTTP/1.1: HTTP/1.0"),
        (DuplicateParameter("a"), "duplicate parameter: a"),
        (InvalidParameterName("a"), "invalid parameter name: a"),
        (InvalidParameterValue("a", None), "missing value for parameter a"),
        (InvalidParameterValue("a", ""), "empty value for parameter a"),
        (InvalidParameterValue("a", "b"), "invalid value for parameter a: b"),
        (
            InvalidStatus(Response(404, "Not Found", Headers())),
            "server rejected WebSocket connection: HTTP 404",
        ),
    ],
)
def test_messages(exc: Exception, text: str) -> None:
    assert str(exc) == text


def test_codes_and_statuses() -> None:
    assert ConnectionClosed(None, None).code == 1006
    assert ConnectionClosed(Close(1000, "r"), None).reason == "r"
    assert ProtocolError("x").code == 1002
    assert ProtocolError("x", 1011).code == 1011
    assert PayloadTooBig("x").code == 1009
    assert InvalidOrigin("o").status == http.HTTPStatus.FORBIDDEN
    assert InvalidMethod("PUT").status == 405
    assert InvalidProtocol("HTTP/2").status == 505
    assert RequestLineTooLong().status == 414
    assert HeaderLineTooLong().status == TooManyHeaders().status == 431
