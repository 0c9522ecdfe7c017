from __future__ import annotations

import pytest

from portside.exceptions import InvalidMessage
from portside.protocol.headers import Headers
from portside.protocol.http11 import (
    MAX_BODY_SIZE,
    MAX_HEADERS,
    MAX_LINE_LENGTH,
    Request,
    RequestParser,
    Response,
    ResponseParser,
)

REQUEST = (
    b"GET /chat?x=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"X-Spaces:   padded \t\r\n"
    b"\r\n"
)


def test_request_in_one_piece() -> None:
    parser = RequestParser()
    request = parser.feed(REQUEST + b"extra")
    assert request is not None
    assert request.path == "/chat?x=1"
    assert request.method == "GET"
    assert request.headers["host"] == "example.com"
    assert request.headers["X-Spaces"] == "padded"
    assert parser.rest == b"extra"


def test_request_byte_by_byte() -> None:
    parser = RequestParser()
    results = [parser.feed(REQUEST[i : i + 1]) for i in range(len(REQUEST))]
    assert results[:-1] == [None] * (len(REQUEST) - 1)
    assert results[-1] is not None
    assert results[-1].path == "/chat?x=1"


def test_request_round_trip() -> None:
    request = Request("/x", Headers({"Host": "h"}))
    parsed = RequestParser().feed(request.serialize())
    assert parsed == request


def status_of(data: bytes) -> int:
    with pytest.raises(InvalidMessage) as info:
        RequestParser().feed(data)
    return info.value.status


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", 505),
        (b"GET / HTTP/2\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nA: \x00\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"\r\n\r\n", 400),
    ],
)
def test_invalid_requests(data: bytes, status: int) -> None:
    assert status_of(data) == status


def test_content_length_zero_is_fine() -> None:
    assert RequestParser().feed(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n") is not None


def test_request_line_too_long_fails_before_it_ends() -> None:
    parser = RequestParser()
    assert parser.feed(b"GET /" + b"a" * (MAX_LINE_LENGTH - 10)) is None
    with pytest.raises(InvalidMessage) as info:
        parser.feed(b"a" * 20)
    assert info.value.status == 414


def test_header_line_too_long() -> None:
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_LINE_LENGTH + b"\r\n\r\n"
    assert status_of(data) == 431


def test_too_many_headers_fails_before_the_head_ends() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n")
    for _ in range(MAX_HEADERS):
        assert parser.feed(b"X: 1\r\n") is None
    with pytest.raises(InvalidMessage) as info:
        parser.feed(b"X: 1\r\n")
    assert info.value.status == 431


def test_maximum_headers_accepted() -> None:
    data = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * MAX_HEADERS + b"\r\n"
    request = RequestParser().feed(data)
    assert request is not None
    assert len(request.headers.get_all("X")) == MAX_HEADERS


def test_other_methods_are_parsed() -> None:
    request = RequestParser().feed(b"POST / HTTP/1.1\r\n\r\n")
    assert request is not None
    assert request.method == "POST"


# Responses.


def test_101_response_leaves_the_rest() -> None:
    parser = ResponseParser()
    response = parser.feed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    )
    assert response is not None
    assert response.status_code == response.status == 101
    assert response.reason_phrase == "Switching Protocols"
    assert parser.rest == b"\x81\x00"


def test_response_round_trip() -> None:
    response = Response(200, "OK", Headers({"Content-Length": "3"}), b"abc")
    assert ResponseParser().feed(response.serialize()) == response


def test_response_with_content_length_in_pieces() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nab") is None
    response = parser.feed(b"cdeXYZ")
    assert response is not None
    assert response.body == b"abcde"
    assert parser.rest == b"XYZ"


def test_chunked_response() -> None:
    parser = ResponseParser()
    data = (
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext\r\nabc\r\n2\r\nde\r\n0\r\n\r\nrest"
    )
    results = [parser.feed(data[i : i + 1]) for i in range(len(data) - 4)]
    response = results[-1]
    assert response is not None
    assert response.body == b"abcde"


def test_response_until_eof() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 403 Forbidden\r\n\r\nno") is None
    assert parser.feed(b" way") is None
    assert parser.feed_eof().body == b"no way"


def test_response_without_reason_phrase() -> None:
    response = ResponseParser().feed(b"HTTP/1.1 204\r\n\r\n")
    assert response is not None
    assert (response.status_code, response.reason_phrase) == (204, "")


def test_truncated_response() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(InvalidMessage, match="closed before"):
        parser.feed_eof()
    with pytest.raises(InvalidMessage):
        ResponseParser().feed_eof()


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 99 Weird\r\n\r\n",
        b"HTTP/1.1 abc Bad\r\n\r\n",
        b"HTTP/1.1 600 Bad\r\n\r\n",
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_SIZE + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY_SIZE + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * (MAX_LINE_LENGTH + 1),
    ],
)
def test_invalid_responses(data: bytes) -> None:
    with pytest.raises(InvalidMessage):
        ResponseParser().feed(data)


def test_body_until_eof_is_limited() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(InvalidMessage, match="too large"):
        parser.feed(bytes(MAX_BODY_SIZE + 1))
