from __future__ import annotations

import pytest

from portside.exceptions import (
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    ProxyError,
)
from portside.protocol.proxy import (
    Proxy,
    ProxyHandshake,
    get_proxy,
    parse_proxy,
    proxies_from_environment,
    proxy_bypassed,
)
from portside.protocol.uri import parse_uri

# parse_proxy


@pytest.mark.parametrize(
    ("address", "proxy"),
    [
        ("http://proxy:3128", Proxy("http", "proxy", 3128)),
        ("http://proxy", Proxy("http", "proxy", 80)),
        ("https://proxy/", Proxy("https", "proxy", 443)),
        ("socks5h://proxy", Proxy("socks5h", "proxy", 1080)),
        ("socks4://10.0.0.1:9050", Proxy("socks4", "10.0.0.1", 9050)),
        ("socks5://[::1]:1080", Proxy("socks5", "::1", 1080)),
        ("http://PROXY.Example:1", Proxy("http", "proxy.example", 1)),
        ("http://u%40x:p%3Aw@proxy:8", Proxy("http", "proxy", 8, "u@x", "p:w")),
        ("http://u:@proxy", Proxy("http", "proxy", 80, "u", "")),
        ("http://bücher.example", Proxy("http", "xn--bcher-kva.example", 80)),
    ],
)
def test_parse_proxy(address: str, proxy: Proxy) -> None:
    assert parse_proxy(address) == proxy


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("ftp://proxy", "scheme ftp isn't supported"),
        ("proxy:3128", "scheme proxy isn't supported"),
        ("//proxy:3128", r"scheme \(none\) isn't supported"),
        ("http://", "hostname isn't provided"),
        ("http://proxy/path", "path is meaningless"),
        ("http://proxy/?q", "query is meaningless"),
        ("http://proxy/#f", "fragment is meaningless"),
        ("http://u@proxy", "username provided without password"),
        ("http://proxy:99999", "out of range"),
        ("http://u:%ff@proxy", "UTF-8"),
    ],
)
def test_parse_invalid_proxy(address: str, error: str) -> None:
    with pytest.raises(InvalidProxy, match=error) as info:
        parse_proxy(address)
    assert info.value.proxy == address
    assert isinstance(info.value, ValueError)


def test_user_info() -> None:
    assert parse_proxy("http://a:b@p").user_info == ("a", "b")
    assert parse_proxy("http://p").user_info is None


# The environment


def test_lower_case_variables_win() -> None:
    environ = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"}
    assert proxies_from_environment(environ) == {"https": "http://lower:1"}


def test_empty_lower_case_variable_cancels_upper_case() -> None:
    environ = {"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}
    assert proxies_from_environment(environ) == {}


def test_cgi_ignores_upper_case_http_proxy() -> None:
    # CVE-2016-1000110: a client's Proxy: header becomes HTTP_PROXY in CGI.
    environ = {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://evil:1"}
    assert proxies_from_environment(environ) == {}
    environ["http_proxy"] = "http://good:1"
    assert proxies_from_environment(environ) == {"http": "http://good:1"}


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("wss_proxy", "http://from-env:3128")
    assert get_proxy(parse_uri("wss://example.com/")) == "http://from-env:3128"


@pytest.mark.parametrize(
    ("uri", "environ", "proxy"),
    [
        ("ws://h/", {}, None),
        ("ws://h/", {"http_proxy": "http://p:1"}, "http://p:1"),
        ("wss://h/", {"http_proxy": "http://p:1"}, None),
        ("ws://h/", {"http_proxy": "http://a:1", "https_proxy": "http://b:1"}, "http://b:1"),
        ("wss://h/", {"https_proxy": "http://b:1", "socks_proxy": "socks5://s:1"}, "socks5://s:1"),
        ("wss://h/", {"socks_proxy": "socks5://s:1", "wss_proxy": "http://w:1"}, "http://w:1"),
        ("ws://h/", {"ws_proxy": "http://w:1", "socks_proxy": "socks5://s:1"}, "http://w:1"),
        ("ws://h/", {"socks_proxy": "http://s:1"}, "socks5h://s:1"),
        ("ws://h/", {"ALL_PROXY": "http://all:1"}, None),
        ("ws://h/", {"HTTP_PROXY": "http://p:1", "NO_PROXY": "h"}, None),
        ("ws://h/", {"http_proxy": "http://p:1", "no_proxy": "*"}, None),
        ("ws://h/", {"http_proxy": "http://p:1", "no_proxy": "other"}, "http://p:1"),
    ],
)
def test_get_proxy(uri: str, environ: dict[str, str], proxy: str | None) -> None:
    assert get_proxy(parse_uri(uri), environ) == proxy


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("example.com", 80, "example.com", True),
        ("EXAMPLE.com", 80, "example.COM", True),
        ("www.example.com", 80, "example.com", True),
        ("www.example.com", 80, ".example.com", True),
        ("badexample.com", 80, "example.com", False),
        ("example.com", 8080, "example.com:8080", True),
        ("example.com", 8081, "example.com:8080", False),
        ("example.com", 80, " other , example.com ", True),
        ("example.com", 80, ",,", False),
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("::1", 80, "::1", True),
        ("example.com", 80, " * ", True),
    ],
)
def test_proxy_bypassed(host: str, port: int, no_proxy: str, bypassed: bool) -> None:
    assert proxy_bypassed(host, port, no_proxy) is bypassed


# HTTP CONNECT


def handshake(
    proxy: str = "http://proxy:3128", uri: str = "wss://example.com/chat"
) -> ProxyHandshake:
    return ProxyHandshake(parse_proxy(proxy), parse_uri(uri), user_agent_header="test/1")


def test_connect_request() -> None:
    assert handshake().connect_request() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: test/1\r\n\r\n"
    )


def test_connect_request_with_credentials_and_ipv6() -> None:
    h = ProxyHandshake(parse_proxy("http://Aladdin:open%20sesame@p"), parse_uri("ws://[::1]:9/"))
    assert h.connect_request() == (
        b"CONNECT [::1]:9 HTTP/1.1\r\n"
        b"Host: [::1]:9\r\n"
        # RFC 7617 2's example credentials.
        b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"
        b"\r\n"
    )


def test_socks_proxies_do_not_connect_over_http() -> None:
    with pytest.raises(ValueError, match="socks5 proxies do not use HTTP CONNECT"):
        ProxyHandshake(parse_proxy("socks5://p"), parse_uri("ws://h/"))


def test_tunnel_opens_after_the_head_of_a_2xx() -> None:
    h = handshake()
    # Content-Length is ignored in a 2xx answer to CONNECT (RFC 9110 9.3.6).
    assert h.receive_data(b"HTTP/1.1 200 Connection established\r\nContent-Length: 9") is None
    response = h.receive_data(b"\r\n\r\n\x16\x03\x01")
    assert response is not None
    assert response.status_code == 200
    assert h.response is response
    assert h.rest == b"\x16\x03\x01"


def test_proxy_refuses() -> None:
    h = handshake()
    with pytest.raises(InvalidProxyStatus) as info:
        h.receive_data(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="proxy"\r\n'
            b"Content-Length: 6\r\n\r\ndenied"
        )
    assert info.value.response.status_code == 407
    assert info.value.response.body == b"denied"
    assert str(info.value) == "proxy rejected connection: HTTP 407"
    assert isinstance(info.value, ProxyError)
    assert h.response is None


def test_proxy_refuses_and_hangs_up() -> None:
    h = handshake()
    assert h.receive_data(b"HTTP/1.1 403 Forbidden\r\n\r\nno") is None
    with pytest.raises(InvalidProxyStatus) as info:
        h.receive_eof()
    assert info.value.response.body == b"no"


def test_proxy_hangs_up_before_answering() -> None:
    h = handshake()
    assert h.receive_data(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(InvalidProxyMessage) as info:
        h.receive_eof()
    # The cause says that the proxy hung up.
    assert isinstance(info.value.__cause__, EOFError)


def test_proxy_answers_garbage() -> None:
    with pytest.raises(InvalidProxyMessage, match="did not receive a valid HTTP response"):
        handshake().receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_informational_answer_is_refused() -> None:
    with pytest.raises(InvalidProxyStatus):
        handshake().receive_data(b"HTTP/1.1 100 Continue\r\n\r\n")
