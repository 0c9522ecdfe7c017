"""Threading clients through real proxies: tinyproxy (CONNECT), haproxy (HTTPS), Dante (SOCKS).

Each test starts its own proxy on a free port, with a configuration written to
a temporary directory, and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
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
from portside.sync.server import unix_serve
from tests.needs import needs
from tests.sync.helpers import TIMEOUT, echo, running
from tests.sync.test_server import CERT, tls_contexts

TINYPROXY = shutil.which("tinyproxy")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if pathlib.Path("/usr/sbin/haproxy").exists() else None
)
DANTED = shutil.which("danted") or (
    "/usr/sbin/danted" if pathlib.Path("/usr/sbin/danted").exists() else None
)
needs_tinyproxy = needs(TINYPROXY, "needs tinyproxy (apt install tinyproxy)")
needs_haproxy = needs(HAPROXY, "needs haproxy (apt install haproxy)")
needs_danted = needs(DANTED, "needs danted (apt install dante-server)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    """Wait until the proxy accepts connections (it announces nothing else)."""
    deadline = threading.Event()
    timer = threading.Timer(TIMEOUT, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            if process.poll() is not None:
                pytest.fail(f"proxy exited with {process.returncode}: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                deadline.wait(0.02)
            else:
                return
        pytest.fail(f"proxy did not listen on {port}: {log.read_text()}")  # pragma: no cover
    finally:
        timer.cancel()
        timer.join()


@contextlib.contextmanager
def proxy_process(command: list[str], port: int, log: pathlib.Path) -> Iterator[None]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()


def start_tinyproxy(
    tmp_path: pathlib.Path, extra: str = ""
) -> contextlib.AbstractContextManager[None]:
    assert TINYPROXY is not None
    port = free_port()
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Connect\nMaxClients 20\n"
        f"Allow 127.0.0.1\n{extra}"
    )
    tmp_path.joinpath("tinyproxy.port").write_text(str(port))
    return proxy_process([TINYPROXY, "-d", "-c", str(config)], port, tmp_path / "tinyproxy.log")


@pytest.fixture
def tinyproxy(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTP proxy without authentication: its address and its log."""
    with start_tinyproxy(tmp_path):
        port = tmp_path.joinpath("tinyproxy.port").read_text()
        yield f"http://127.0.0.1:{port}", tmp_path / "tinyproxy.log"


@pytest.fixture
def tinyproxy_auth(tmp_path: pathlib.Path) -> Iterator[str]:
    """An HTTP proxy that wants alice's credentials: its address, without them."""
    with start_tinyproxy(tmp_path, "BasicAuth alice s3cr3t\n"):
        yield f"127.0.0.1:{tmp_path.joinpath('tinyproxy.port').read_text()}"


@pytest.fixture
def https_proxy(
    tmp_path: pathlib.Path, tinyproxy: tuple[str, pathlib.Path]
) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTPS proxy: haproxy terminates TLS (localhost.pem) in front of tinyproxy."""
    assert HAPROXY is not None
    plain, log = tinyproxy
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 100\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
        "  timeout server 30s\n"
        f"frontend tls\n  bind 127.0.0.1:{port} ssl crt {CERT}\n  default_backend proxy\n"
        f"backend proxy\n  server tinyproxy {plain.removeprefix('http://')}\n"
    )
    with proxy_process([HAPROXY, "-db", "-f", str(config)], port, tmp_path / "haproxy.log"):
        yield f"https://localhost:{port}", log


@pytest.fixture
def danted(tmp_path: pathlib.Path) -> Iterator[tuple[int, pathlib.Path]]:
    """A SOCKS4/SOCKS5 proxy without authentication: its port and its log."""
    assert DANTED is not None
    port = free_port()
    config = tmp_path / "danted.conf"
    log = tmp_path / "danted.log"
    config.write_text(
        "logoutput: stderr\n"
        f"internal: 127.0.0.1 port = {port}\n"
        "external: 127.0.0.1\n"
        "clientmethod: none\n"
        "socksmethod: none\n"
        "user.privileged: root\n"
        "user.unprivileged: nobody\n"
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect }\n"
    )
    command = [DANTED, "-f", str(config), "-N", "1", "-p", str(tmp_path / "danted.pid")]
    with proxy_process(command, port, log):
        yield port, log


@contextlib.contextmanager
def echo_port(tls: bool = False) -> Iterator[int]:
    server_context = tls_contexts()[0] if tls else None
    with running(ssl=server_context) as server:
        yield server.socket.getsockname()[1]


def round_trip(uri: str, **kwargs: Any) -> None:
    with connect(uri, **kwargs) as ws:
        ws.send("through the proxy")
        assert ws.recv(timeout=TIMEOUT) == "through the proxy"


def tunnelled_to(log: pathlib.Path, port: int) -> bool:
    # tinyproxy logs each CONNECT with its target; Dante each connection.
    text = log.read_text()
    return f":{port}" in text or f".{port}" in text


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
def test_proxy_authentication(tinyproxy_auth: str) -> None:
    with echo_port() as port:
        round_trip(f"ws://127.0.0.1:{port}/", proxy=f"http://alice:s3cr3t@{tinyproxy_auth}")
        with pytest.raises(InvalidProxyStatus) as raised:
            round_trip(f"ws://127.0.0.1:{port}/", proxy=f"http://{tinyproxy_auth}")
        assert raised.value.response.status_code == 407
        with pytest.raises(InvalidProxyStatus):
            round_trip(f"ws://127.0.0.1:{port}/", proxy=f"http://alice:wrong@{tinyproxy_auth}")


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


@contextlib.contextmanager
def fake_proxy(answer: bytes) -> Iterator[str]:
    """A TCP server answering one CONNECT request with ``answer``, then hanging up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)  # a test that never connects does not hang
    connections: list[socket.socket] = []

    def serve() -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        connections.append(sock)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.sendall(answer)
        sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        thread.join()
        listener.close()
        for sock in connections:
            sock.close()


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
    with fake_proxy(answer) as proxy, pytest.raises(error):
        connect("ws://example.com/", proxy=proxy)


def test_invalid_proxies() -> None:
    with pytest.raises(InvalidProxy):
        connect("ws://example.com/", proxy="ftp://proxy")
    with pytest.raises(TypeError, match="proxy"):
        connect("ws://example.com/", proxy=42)


def test_unix_connect_ignores_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        with unix_serve(echo, path, ping_interval=None) as server:
            thread = threading.Thread(target=server.serve_forever)
            thread.start()
            try:
                with unix_connect(path, proxy="http://127.0.0.1:9") as ws:
                    ws.send("local")
                    assert ws.recv(timeout=TIMEOUT) == "local"
            finally:
                server.shutdown()
                thread.join()
