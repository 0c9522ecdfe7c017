from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.exceptions import (
    HeaderLineTooLong,
    InvalidMessage,
    InvalidProtocol,
    RequestLineTooLong,
    SecurityError,
    StatusLineTooLong,
    TooManyHeaders,
)
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


def test_http10_requests_are_read() -> None:
    # For process_request (health checks); the handshake itself needs 1.1.
    parsed = RequestParser().feed(b"GET /healthz HTTP/1.0\r\nUser-Agent: check\r\n\r\n")
    assert parsed is not None
    assert (parsed.method, parsed.path, parsed.http_version) == ("GET", "/healthz", "HTTP/1.0")
    assert parsed.headers["User-Agent"] == "check"
    assert parsed.serialize().startswith(b"GET /healthz HTTP/1.0\r\n")
    fresh = RequestParser().feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert fresh is not None
    assert fresh.http_version == "HTTP/1.1"
    assert Request("/", Headers()).http_version == "HTTP/1.1"


def test_responses_for_http10_clients() -> None:
    ok = Response(200, "OK", Headers([("Connection", "close"), ("Content-Length", "3")]), b"OK\n")
    assert ok.for_http10() is ok
    # Keep-alive (or nothing) becomes close: the server closes after it.
    kept = Response(200, "OK", Headers([("Connection", "keep-alive"), ("X", "1")]), b"hi")
    adapted = kept.for_http10()
    assert adapted.headers.get_all("Connection") == ["close"]
    assert adapted.headers["X"] == "1"
    assert kept.headers["Connection"] == "keep-alive"  # a copy: a Response may be shared
    assert adapted.serialize().startswith(b"HTTP/1.1 200 OK\r\n")  # RFC 9110 2.5
    bare = Response(204, "No Content", Headers())
    assert bare.for_http10().headers.get_all("Connection") == ["close"]
    # No chunking: the body is decoded and sent with its length.
    chunked = Response(
        200,
        "OK",
        Headers([("Transfer-Encoding", "chunked"), ("Content-Length", "99")]),
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    plain = chunked.for_http10()
    assert "Transfer-Encoding" not in plain.headers
    assert plain.body == b"hello world"
    assert plain.headers.get_all("Content-Length") == ["11"]
    # A body that is not valid chunked encoding goes as it is.
    broken = Response(200, "OK", Headers([("Transfer-Encoding", "chunked")]), b"zz\r\n")
    assert broken.for_http10().body == b"zz\r\n"
    assert broken.for_http10().headers["Content-Length"] == "4"
    gzip = Response(200, "OK", Headers([("Transfer-Encoding", "gzip")]), b"\x1f\x8b")
    assert gzip.for_http10().body == b"\x1f\x8b"
    assert "Transfer-Encoding" not in gzip.for_http10().headers


def status_of(data: bytes) -> int:
    with pytest.raises(InvalidMessage) as info:
        RequestParser().feed(data)
    return info.value.status


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\n\r\n", 505),
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
        # Repeated headers: a 400, not an error of another kind.
        (b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: a\r\nTransfer-Encoding: b\r\n\r\n", 400),
    ],
)
def test_invalid_requests(data: bytes, status: int) -> None:
    assert status_of(data) == status


def outcome(parser: RequestParser, pieces: list[bytes]) -> object:
    """What feeding ``pieces`` gives: the request and what follows it, or the error."""
    try:
        for i, piece in enumerate(pieces):
            request = parser.feed(piece)
            if request is not None:
                return request, parser.rest + b"".join(pieces[i + 1 :])
    except InvalidMessage as exc:
        return exc.status, str(exc)
    return None


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(
                [
                    b"Host: h",
                    b"X-A:  1 2 ",
                    b"x:",
                    b"Bad name: 1",
                    b" folded",
                    b"A: \x00",
                    b"A: \xe9",
                ]
            ),
            st.binary(max_size=12),
        ),
        max_size=6,
    ),
    first=st.sampled_from([b"GET / HTTP/1.1", b"GET /\x7f HTTP/1.1", b"", b"GET /a"]),
    rest=st.binary(max_size=8),
)
def test_request_in_one_read_parses_as_line_by_line(
    lines: list[bytes], first: bytes, rest: bytes
) -> None:
    # A head that comes whole takes a shortcut; byte by byte it goes line by
    # line: both must give the same request, or the same error.
    data = b"\r\n".join([first, *lines]) + b"\r\n\r\n" + rest
    whole = outcome(RequestParser(), [data])
    assert whole == outcome(RequestParser(), [data[i : i + 1] for i in range(len(data))])
    if isinstance(whole, tuple) and isinstance(whole[0], Request):
        # The whole head reached the shortcut only if the first line was not
        # empty: check that case against a parser that must go line by line.
        split = RequestParser()
        assert outcome(split, [data[:1], data[1:]]) == whole


def test_limits_hold_for_a_head_in_one_read() -> None:
    first = b"GET /" + b"a" * MAX_LINE_LENGTH + b" HTTP/1.1"
    assert status_of(first + b"\r\n\r\n") == 414
    assert status_of(b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n") == 431
    # Many short headers over MAX_LINE_LENGTH bytes in all are fine.
    many = b"GET / HTTP/1.1\r\n" + (b"X: " + b"b" * 100 + b"\r\n") * MAX_HEADERS + b"\r\n"
    request = RequestParser().feed(many)
    assert request is not None
    assert len(request.headers.get_all("x")) == MAX_HEADERS


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


@pytest.mark.parametrize("method", [b"M-SEARCH", b"X_1.~!#$%&'*+^`|", b"get"])
def test_any_token_is_a_method(method: bytes) -> None:
    # RFC 9110 9.1: a method is a token, case-sensitive.
    request = RequestParser().feed(method + b" / HTTP/1.1\r\n\r\n")
    assert request is not None
    assert request.method == method.decode()
    assert request.serialize() == method + b" / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize(
    "method",
    [b"G\xffT", b"GE(T", b"G\x00T", b"GET\t", b"G:T", b"G/T", b'"GET"', b"\x7f", b"\xc3\xa9"],
)
def test_a_method_that_is_not_a_token_is_a_400(method: bytes) -> None:
    # Found by fuzzing/http.py (fuzzing/regressions/http/non-ascii-method): the
    # method was decoded with replacement characters, and serialize() failed.
    with pytest.raises(InvalidMessage, match="invalid request method") as info:
        RequestParser().feed(method + b" / HTTP/1.1\r\n\r\n")
    assert info.value.status == 400


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


def test_repeated_framing_headers_in_a_response() -> None:
    # RFC 7230 3.3.2: repeated Content-Length headers that agree are one.
    data = b"HTTP/1.1 404 No\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi"
    response = ResponseParser().feed(data)
    assert response is not None
    assert response.body == b"hi"
    # Transfer-Encoding over two headers: chunked is the last coding.
    data = (
        b"HTTP/1.1 404 No\r\nTransfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    response = ResponseParser().feed(data)
    assert response is not None
    assert response.body == b"hi"


def test_response_until_eof() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 403 Forbidden\r\n\r\nno") is None
    assert parser.feed(b" way") is None
    assert parser.feed_eof().body == b"no way"


def test_response_without_reason_phrase() -> None:
    response = ResponseParser().feed(b"HTTP/1.1 204\r\n\r\n")
    assert response is not None
    assert (response.status_code, response.reason_phrase) == (204, "")


def test_reason_phrase_takes_visible_characters_spaces_tabs_and_obs_text() -> None:
    # RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
    response = ResponseParser().feed(b"HTTP/1.1 204 I'm a\tteapot \xe9 \r\n\r\n")
    assert response is not None
    assert response.reason_phrase == "I'm a\tteapot \xe9 "
    assert response.serialize() == b"HTTP/1.1 204 I'm a\tteapot \xe9 \r\n\r\n"


@pytest.mark.parametrize("reason", [b"O\x00K", b"OK\x7f", b"\x1b[31mOK", b"O\rK"])
def test_reason_phrase_with_a_control_character_is_invalid(reason: bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid status line"):
        ResponseParser().feed(b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 0\r\n\r\n")


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
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
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


def cause_of(parser: RequestParser | ResponseParser, data: bytes) -> BaseException | None:
    with pytest.raises(InvalidMessage) as info:
        parser.feed(data)
    return info.value.__cause__


def test_limits_name_websockets_exceptions_as_the_cause() -> None:
    # websockets raises these; portside raises InvalidMessage from them.
    long_line = b"a" * (MAX_LINE_LENGTH + 1)
    assert isinstance(cause_of(RequestParser(), b"GET /" + long_line), RequestLineTooLong)
    assert isinstance(cause_of(ResponseParser(), b"HTTP/1.1 200 " + long_line), StatusLineTooLong)
    header = b"GET / HTTP/1.1\r\nX: " + long_line + b"\r\n\r\n"
    assert isinstance(cause_of(RequestParser(), header), HeaderLineTooLong)
    many = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n"
    assert isinstance(cause_of(RequestParser(), many), TooManyHeaders)
    cause = cause_of(RequestParser(), b"GET / HTTP/2.0\r\n\r\n")
    assert isinstance(cause, InvalidProtocol)
    assert cause.protocol == "HTTP/2.0"
    assert all(issubclass(cls, SecurityError) for cls in (RequestLineTooLong, TooManyHeaders))


def test_response_cut_by_eof_has_an_eof_error_as_cause() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(InvalidMessage) as info:
        parser.feed_eof()
    assert isinstance(info.value.__cause__, EOFError)


def test_tunnel_response_ends_with_its_head() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    tunnel = ResponseParser(tunnel=True)
    response = tunnel.feed(head + b"tunnel")
    assert response is not None
    assert (response.body, tunnel.rest) == (b"", b"tunnel")
    # Not a tunnel: the same bytes are the start of a 10-byte body.
    assert ResponseParser().feed(head + b"tunnel") is None
    # An error answer to CONNECT has its body read as usual.
    refused = ResponseParser(tunnel=True)
    response = refused.feed(b"HTTP/1.1 407 No\r\nContent-Length: 2\r\n\r\nno")
    assert response is not None
    assert response.body == b"no"
