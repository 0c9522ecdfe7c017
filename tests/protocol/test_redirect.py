from __future__ import annotations

import pytest

from portside.exceptions import InvalidHandshake, InvalidURI
from portside.protocol.headers import Headers
from portside.protocol.http11 import Response
from portside.protocol.redirect import MAX_REDIRECTS, Redirects
from portside.protocol.uri import parse_uri


def redirect(status: int = 302, *locations: str) -> Response:
    return Response(status, "", Headers(("Location", location) for location in locations))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_a_redirect(status: int) -> None:
    redirects = Redirects(parse_uri("ws://example.com/a/b?x=1"), None)
    assert redirects.follow(redirect(status, "c"))
    assert redirects.uri == parse_uri("ws://example.com/a/c")
    assert redirects.location == "ws://example.com/a/c"
    assert redirects.headers is None


def test_follows_an_absolute_location_and_keeps_the_port() -> None:
    redirects = Redirects(parse_uri("wss://example.com:8443/"), None)
    assert redirects.follow(redirect(301, "/elsewhere"))
    assert redirects.location == "wss://example.com:8443/elsewhere"
    assert redirects.follow(redirect(301, "wss://other.example/"))
    assert redirects.uri == parse_uri("wss://other.example/")


@pytest.mark.parametrize(
    "response",
    [
        redirect(200, "/x"),
        redirect(300, "/x"),
        redirect(304, "/x"),
        redirect(404),
        redirect(302),  # no Location
        redirect(302, "/x", "/y"),  # which one?
    ],
)
def test_other_answers_are_not_followed(response: Response) -> None:
    uri = parse_uri("ws://example.com/")
    redirects = Redirects(uri, None)
    assert not redirects.follow(response)
    assert redirects.uri is uri


def test_nothing_is_followed_when_told_not_to() -> None:
    redirects = Redirects(parse_uri("ws://example.com/"), None, follow=False)
    assert not redirects.follow(redirect(302, "/x"))


def test_no_redirect_from_wss_to_ws() -> None:
    redirects = Redirects(parse_uri("wss://example.com/"), None)
    with pytest.raises(InvalidURI, match="redirect from wss:// to ws:// refused"):
        redirects.follow(redirect(302, "ws://example.com/"))
    # From ws:// to wss:// is fine.
    redirects = Redirects(parse_uri("ws://example.com/"), None)
    assert redirects.follow(redirect(302, "wss://example.com/"))


def test_a_location_that_is_no_websocket_uri() -> None:
    redirects = Redirects(parse_uri("ws://example.com/"), None)
    with pytest.raises(InvalidURI):
        redirects.follow(redirect(302, "https://example.com/"))


def test_at_most_max_redirects() -> None:
    redirects = Redirects(parse_uri("ws://example.com/"), None)
    for _ in range(MAX_REDIRECTS):
        assert redirects.follow(redirect(302, "/again"))
    with pytest.raises(InvalidHandshake, match=f"more than {MAX_REDIRECTS} redirects"):
        redirects.follow(redirect(302, "/again"))


def test_credentials_stay_with_their_origin() -> None:
    headers = Headers([("Authorization", "Basic eDp5"), ("Cookie", "a=b"), ("X-Other", "kept")])
    redirects = Redirects(parse_uri("ws://example.com/"), headers)
    # Same origin: everything goes along.
    assert redirects.follow(redirect(302, "/other/path"))
    assert redirects.headers is headers
    # Another port is another origin.
    assert redirects.follow(redirect(302, "ws://example.com:8080/"))
    assert redirects.headers is not None
    assert list(Headers(redirects.headers).raw_items()) == [("X-Other", "kept")]


@pytest.mark.parametrize(
    "target", ["ws://other.example/", "wss://example.com:80/", "ws://example.com:81/"]
)
def test_another_origin_gets_no_credentials(target: str) -> None:
    headers = {"Proxy-Authorization": "Basic eDp5", "Accept-Language": "fr"}
    redirects = Redirects(parse_uri("ws://example.com/"), headers)
    assert redirects.follow(redirect(307, target))
    assert redirects.headers is not None
    assert list(Headers(redirects.headers).raw_items()) == [("Accept-Language", "fr")]
