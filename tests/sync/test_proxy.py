"""Threading clients through real proxies: tinyproxy (CONNECT), haproxy (HTTPS), Dante (SOCKS).

Each test starts its own proxy on a free port, with a configuration written to
a temporary directory, and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import pathlib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from portside.exceptions import (
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    ProxyError,
)
from portside.sync.client import connect, unix_connect
from tests.proxies import free_port, needs_danted, needs_haproxy, needs_tinyproxy, tunnelled_to
from tests.sync.helpers import TIMEOUT, raw_http_server, running, running_unix
from tests.sync.test_server import tls_contexts


@contextlib.contextmanager
def echo_port(tls: bool = False) -> Iterator[int]:
    server_context = tls_contexts()[0] if tls else None
    with running(ssl=server_context) as server:
        yield server.socket.getsockname()[1]


def round_trip(uri: str, **kwargs: Any) -> None:
    with connect(uri, **kwargs) as ws:
        ws.send("through the proxy")
        assert ws.recv(timeout=TIMEOUT) == "through the proxy"


# HTTP CONNECT.


@needs_tinyproxy
def test_ws_through_http_proxy(tinyproxy: tuple[str, pathlib.Path]) -> None:
    proxy, log = tinyproxy
    with echo_port() as port:
        round_trip(f"ws://127.0.0.1:{port}/", proxy=proxy)
    assert tunnelled_to(log, port)


@needs_tinyproxy
def test_wss_through_http_proxy(tinyproxy: tuple[str, pathlib.Path]) -> None:
    proxy, log = tinyproxy
    with echo_port(tls=True) as port:
        round_trip(f"wss://localhost:{port}/", proxy=proxy, ssl=tls_contexts()[1])
    assert tunnelled_to(log, port)


@needs_tinyproxy
def test_proxy_from_the_environment(
    tinyproxy: tuple[str, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, log = tinyproxy
    monkeypatch.setenv("http_proxy", proxy)
    with echo_port() as port:
        round_trip(f"ws://127.0.0.1:{port}/")
        assert tunnelled_to(log, port)
    # no_proxy exempts the host; proxy=None ignores the environment.
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with echo_port() as port:
        round_trip(f"ws://127.0.0.1:{port}/")
        assert not tunnelled_to(log, port)
    monkeypatch.delenv("no_proxy")
    with echo_port() as port:
        round_trip(f"ws://127.0.0.1:{port}/", proxy=None)
        assert not tunnelled_to(log, port)


@needs_tinyproxy
def test_proxy_authentication(tinyproxy_auth: tuple[str, pathlib.Path]) -> None:
    proxy, _ = tinyproxy_auth
    address = proxy.removeprefix("http://")
    with echo_port() as port:
        round_trip(f"ws://127.0.0.1:{port}/", proxy=f"http://alice:s3cr3t@{address}")
        with pytest.raises(InvalidProxyStatus) as raised:
            round_trip(f"ws://127.0.0.1:{port}/", proxy=proxy)
        assert raised.value.response.status_code == 407
        with pytest.raises(InvalidProxyStatus):
            round_trip(f"ws://127.0.0.1:{port}/", proxy=f"http://alice:wrong@{address}")


@needs_haproxy
@needs_tinyproxy
@pytest.mark.parametrize("secure", [False, True])
def test_through_https_proxy(https_proxy: tuple[str, pathlib.Path], secure: bool) -> None:
    # TLS with the proxy; for wss://, TLS with the server inside it.
    proxy, log = https_proxy
    _, client_context = tls_contexts()
    with echo_port(tls=secure) as port:
        if secure:
            round_trip(
                f"wss://localhost:{port}/",
                proxy=proxy,
                proxy_ssl=client_context,
                ssl=client_context,
            )
        else:
            round_trip(f"ws://127.0.0.1:{port}/", proxy=proxy, proxy_ssl=client_context)
    assert tunnelled_to(log, port)


@needs_haproxy
@needs_tinyproxy
def test_https_proxy_certificate_is_checked(https_proxy: tuple[str, pathlib.Path]) -> None:
    proxy, _ = https_proxy
    with echo_port() as port:
        # The default context does not trust the test certificate.
        with pytest.raises(ssl.SSLCertVerificationError):
            round_trip(f"ws://127.0.0.1:{port}/", proxy=proxy)
        _, client_context = tls_contexts()
        round_trip(
            f"ws://127.0.0.1:{port}/",
            proxy=proxy.replace("localhost", "127.0.0.1"),
            proxy_ssl=client_context,
            proxy_server_hostname="localhost",
        )


def test_proxy_ssl_for_an_http_proxy() -> None:
    with pytest.raises(ValueError, match="proxy_ssl"):
        connect("ws://127.0.0.1:1/", proxy="http://127.0.0.1:9", proxy_ssl=tls_contexts()[1])


# SOCKS.


@needs_danted
@pytest.mark.parametrize("scheme", ["socks5h", "socks5", "socks4"])
def test_through_socks_proxy(danted: tuple[int, pathlib.Path], scheme: str) -> None:
    socks_port, log = danted
    with echo_port() as port:
        round_trip(f"ws://localhost:{port}/", proxy=f"{scheme}://127.0.0.1:{socks_port}")
    assert tunnelled_to(log, port)


@needs_danted
def test_wss_through_socks_proxy(danted: tuple[int, pathlib.Path]) -> None:
    socks_port, log = danted
    with echo_port(tls=True) as port:
        round_trip(
            f"wss://localhost:{port}/",
            proxy=f"socks5h://127.0.0.1:{socks_port}",
            ssl=tls_contexts()[1],
        )
    assert tunnelled_to(log, port)


@needs_danted
def test_socks_proxy_refusing(danted: tuple[int, pathlib.Path]) -> None:
    socks_port, _ = danted
    closed = free_port()  # nothing listens there: the proxy's connection fails
    with pytest.raises((ProxyError, OSError)):
        round_trip(f"ws://127.0.0.1:{closed}/", proxy=f"socks5://127.0.0.1:{socks_port}")


# Misbehaving proxies and bad addresses.


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", InvalidProxyStatus),
        (b"garbage\r\n\r\n", InvalidProxyMessage),
        (b"HTTP/1.1 200 OK\r\n\r\nearly bytes", InvalidProxyMessage),
        (b"", InvalidProxyMessage),
    ],
    ids=["refused", "garbage", "data-after-200", "hangs-up"],
)
def test_misbehaving_http_proxy(answer: bytes, error: type[Exception]) -> None:
    # A TCP server answering the CONNECT request with ``answer``, then hanging up.
    with raw_http_server(answer) as port, pytest.raises(error):
        connect("ws://example.com/", proxy=f"http://127.0.0.1:{port}")


def test_invalid_proxies() -> None:
    with pytest.raises(InvalidProxy):
        connect("ws://example.com/", proxy="ftp://proxy")
    with pytest.raises(TypeError, match="proxy"):
        connect("ws://example.com/", proxy=42)


def test_unix_connect_ignores_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with running_unix() as path, unix_connect(path, proxy="http://127.0.0.1:9") as ws:
        ws.send("local")
        assert ws.recv(timeout=TIMEOUT) == "local"
