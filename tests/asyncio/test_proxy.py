"""Clients through real proxies: tinyproxy (HTTP CONNECT) and Dante (SOCKS).

Each test starts its own proxy on a free port, with a configuration written to
a temporary directory, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import portside
from portside.exceptions import InvalidProxy, InvalidProxyMessage, InvalidProxyStatus, ProxyError
from tests.asyncio.helpers import echo
from tests.needs import needs

CERT = pathlib.Path(__file__).with_name("localhost.pem")
TINYPROXY = shutil.which("tinyproxy")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if pathlib.Path("/usr/sbin/haproxy").exists() else None
)
DANTED = shutil.which("danted") or (
    "/usr/sbin/danted" if pathlib.Path("/usr/sbin/danted").exists() else None
)
needs_tinyproxy = needs(TINYPROXY, "needs tinyproxy (apt install tinyproxy)")
needs_danted = needs(DANTED, "needs danted (apt install dante-server)")
needs_haproxy = needs(HAPROXY, "needs haproxy (apt install haproxy)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"proxy exited with {process.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.02)  # polling the socket until the proxy listens
        else:
            return
    pytest.fail(f"proxy did not listen on {port}: {log.read_text()}")  # pragma: no cover


@contextlib.contextmanager
def proxy_process(
    command: list[str], port: int, log: pathlib.Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()


@pytest.fixture
def tinyproxy(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTP proxy without authentication: its address and its log."""
    port = free_port()
    yield from _tinyproxy(tmp_path, port, "")


@pytest.fixture
def tinyproxy_auth(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTP proxy that wants alice's credentials."""
    port = free_port()
    yield from _tinyproxy(tmp_path, port, "BasicAuth alice s3cr3t\n")


def _tinyproxy(tmp_path: pathlib.Path, port: int, extra: str) -> Iterator[tuple[str, pathlib.Path]]:
    assert TINYPROXY is not None
    config = tmp_path / "tinyproxy.conf"
    log = tmp_path / "tinyproxy.log"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Connect\nMaxClients 20\n"
        f"Allow 127.0.0.1\n{extra}"
    )
    with proxy_process([TINYPROXY, "-d", "-c", str(config)], port, log):
        yield f"http://127.0.0.1:{port}", log


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
        "global\n"
        "  maxconn 100\n"
        "defaults\n"
        "  mode tcp\n"
        "  timeout connect 5s\n"
        "  timeout client 30s\n"
        "  timeout server 30s\n"
        "frontend tls\n"
        f"  bind 127.0.0.1:{port} ssl crt {CERT}\n"
        "  default_backend proxy\n"
        "backend proxy\n"
        f"  server tinyproxy {plain.removeprefix('http://')}\n"
    )
    command = [HAPROXY, "-db", "-f", str(config)]
    with proxy_process(command, port, tmp_path / "haproxy.log"):
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


@contextlib.asynccontextmanager
async def echo_server(tls: bool = False) -> AsyncIterator[int]:
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(CERT)
    async with portside.serve(echo, "127.0.0.1", 0, ssl=context, ping_interval=None) as server:
        yield server.sockets[0].getsockname()[1]


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_verify_locations(CERT)
    return context


async def round_trip(uri: str, **kwargs: object) -> None:
    async with portside.connect(uri, **kwargs) as ws:  # type: ignore[arg-type]
        await ws.send("through the proxy")
        assert await ws.recv() == "through the proxy"


def tunnelled_to(log: pathlib.Path, port: int) -> bool:
    # tinyproxy logs each CONNECT with its target; Dante each connection.
    return f":{port}" in log.read_text() or f".{port}" in log.read_text()


# HTTP CONNECT


@needs_tinyproxy
async def test_ws_through_http_proxy(tinyproxy: tuple[str, pathlib.Path]) -> None:
    proxy, log = tinyproxy
    async with echo_server() as port:
        await round_trip(f"ws://127.0.0.1:{port}/", proxy=proxy)
    assert tunnelled_to(log, port)


@needs_tinyproxy
async def test_wss_through_http_proxy(tinyproxy: tuple[str, pathlib.Path]) -> None:
    # TLS from the client to the server, inside the tunnel.
    proxy, log = tinyproxy
    async with echo_server(tls=True) as port:
        await round_trip(f"wss://localhost:{port}/", proxy=proxy, ssl=client_tls())
    assert tunnelled_to(log, port)


@needs_tinyproxy
@needs_haproxy
async def test_through_https_proxy(https_proxy: tuple[str, pathlib.Path]) -> None:
    # TLS to the proxy; for wss://, TLS to the server inside it (TLS in TLS).
    proxy, log = https_proxy
    async with echo_server() as port:
        await round_trip(f"ws://127.0.0.1:{port}/", proxy=proxy, proxy_ssl=client_tls())
    assert tunnelled_to(log, port)
    if sys.version_info >= (3, 11):  # asyncio's TLS in TLS
        async with echo_server(tls=True) as port:
            await round_trip(
                f"wss://localhost:{port}/", proxy=proxy, proxy_ssl=client_tls(), ssl=client_tls()
            )
        assert tunnelled_to(log, port)
    with pytest.raises(ssl.SSLCertVerificationError):
        await portside.connect("ws://127.0.0.1:1/", proxy=proxy)  # not trusted by default


async def test_proxy_ssl_is_refused_for_an_http_proxy() -> None:
    with pytest.raises(ValueError, match="proxy_ssl was given for an http:// proxy"):
        await portside.connect("ws://127.0.0.1:1/", proxy="http://127.0.0.1:1", proxy_ssl=True)


@needs_tinyproxy
async def test_proxy_authentication(tinyproxy_auth: tuple[str, pathlib.Path]) -> None:
    proxy, _ = tinyproxy_auth
    authenticated = proxy.replace("http://", "http://alice:s3cr3t@")
    async with echo_server() as port:
        await round_trip(f"ws://127.0.0.1:{port}/", proxy=authenticated)
        async with echo_server(tls=True) as tls_port:
            await round_trip(f"wss://localhost:{tls_port}/", proxy=authenticated, ssl=client_tls())
        for wrong in (proxy, proxy.replace("http://", "http://alice:wrong@")):
            with pytest.raises(InvalidProxyStatus) as info:
                await portside.connect(f"ws://127.0.0.1:{port}/", proxy=wrong)
            # 407 by RFC 9110 15.5.8; tinyproxy 1.11 answers CONNECT with 401.
            assert info.value.response.status_code in (401, 407)
            assert isinstance(info.value, ProxyError)


@needs_tinyproxy
async def test_proxy_from_the_environment(
    tinyproxy: tuple[str, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, log = tinyproxy
    monkeypatch.setenv("http_proxy", proxy)
    async with echo_server() as port:
        await round_trip(f"ws://127.0.0.1:{port}/")  # proxy=True is the default
        assert tunnelled_to(log, port)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    async with echo_server() as port:
        await round_trip(f"ws://127.0.0.1:{port}/")
        assert not tunnelled_to(log, port)


async def test_proxy_none_connects_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy that cannot be reached: only a direct connection works.
    monkeypatch.setenv("ws_proxy", f"http://127.0.0.1:{free_port()}")
    async with echo_server() as port:
        with pytest.raises(ConnectionRefusedError):
            await portside.connect(f"ws://127.0.0.1:{port}/")
        await round_trip(f"ws://127.0.0.1:{port}/", proxy=None)


async def test_proxy_that_does_not_speak_http() -> None:
    async def garbage(ws: portside.ServerConnection) -> None:  # pragma: no cover
        pass

    # A WebSocket server is no proxy: it answers CONNECT with 405.
    async with portside.serve(garbage, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(InvalidProxyStatus) as info:
            await portside.connect("ws://example.invalid/", proxy=f"http://127.0.0.1:{port}")
    assert info.value.response.status_code == 405


def test_invalid_proxy_is_refused_at_once() -> None:
    with pytest.raises(InvalidProxy, match="scheme ftp isn't supported"):
        portside.connect("ws://localhost/", proxy="ftp://proxy")
    with pytest.raises(TypeError, match="proxy must be True, None or"):
        portside.connect("ws://localhost/", proxy=False)  # type: ignore[arg-type]


# SOCKS


@needs_danted
# Dante refuses SOCKS4a (a host name for the proxy to resolve): not tested.
@pytest.mark.parametrize("scheme", ["socks5h", "socks5", "socks4"])
async def test_ws_through_socks(danted: tuple[int, pathlib.Path], scheme: str) -> None:
    proxy_port, log = danted
    async with echo_server() as port:
        host = "localhost" if scheme == "socks5h" else "127.0.0.1"
        await round_trip(f"ws://{host}:{port}/", proxy=f"{scheme}://127.0.0.1:{proxy_port}")
    assert tunnelled_to(log, port)


@needs_danted
async def test_wss_through_socks(danted: tuple[int, pathlib.Path]) -> None:
    proxy_port, log = danted
    async with echo_server(tls=True) as port:
        await round_trip(
            f"wss://localhost:{port}/", proxy=f"socks5h://127.0.0.1:{proxy_port}", ssl=client_tls()
        )
    assert tunnelled_to(log, port)


@needs_danted
async def test_socks_proxy_refusal_is_a_proxy_error(danted: tuple[int, pathlib.Path]) -> None:
    proxy_port, _ = danted
    with pytest.raises(ProxyError, match="SOCKS proxy failed"):
        # Nothing listens there: the proxy reports that it could not connect.
        await portside.connect(
            f"ws://127.0.0.1:{free_port()}/", proxy=f"socks5://127.0.0.1:{proxy_port}"
        )


async def test_socks_needs_python_socks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks", None)
    with pytest.raises(
        ImportError, match=r"requires python-socks: pip install 'portside\[socks\]'"
    ):
        await portside.connect("ws://localhost/", proxy="socks5://127.0.0.1:1")


# Proxies that misbehave: a hand-made one that answers as told.


@contextlib.asynccontextmanager
async def fake_proxy(answer: bytes, close: bool = True) -> AsyncIterator[str]:
    handled = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            if not close:
                await reader.read()  # until the client gives up
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            handled.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        await handled.wait()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "close", "error"),
    [
        (b"", True, "proxy closed the connection before answering CONNECT"),
        (b"HTTP/1.1 200 OK\r\n", True, "proxy closed the connection before answering CONNECT"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", True, "did not receive a valid HTTP response"),
        (b"HTTP/1.1 200 OK\r\n\r\nsurprise", False, "proxy sent data after its answer"),
    ],
)
async def test_misbehaving_proxy(answer: bytes, close: bool, error: str) -> None:
    async with fake_proxy(answer, close) as proxy:
        with pytest.raises(InvalidProxyMessage, match=error):
            await portside.connect("ws://example.invalid/", proxy=proxy)


async def test_proxy_refusing_then_closing() -> None:
    async with fake_proxy(b"HTTP/1.1 502 Bad Gateway\r\n\r\nno route") as proxy:
        with pytest.raises(InvalidProxyStatus) as info:
            await portside.connect("ws://example.invalid/", proxy=proxy)
    assert info.value.response.status_code == 502
    assert info.value.response.body == b"no route"


async def test_unix_connect_ignores_proxy_options(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "socket")
    async with portside.unix_serve(echo, path):
        await round_trip_unix(path)


async def round_trip_unix(path: str) -> None:
    async with portside.unix_connect(path, proxy="http://127.0.0.1:1", proxy_ssl=None) as ws:
        await ws.send("direct")
        assert await ws.recv() == "direct"
