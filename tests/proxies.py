"""Real proxies for the client tests of both I/O layers (tests/*/test_proxy.py).

tinyproxy (HTTP ``CONNECT``), haproxy terminating TLS in front of it (an
``https://`` proxy) and Dante (SOCKS4 and SOCKS5). Each fixture starts its own
proxy on a free port, with a configuration written to the test's temporary
directory, and stops it afterwards. tests/conftest.py makes the fixtures
available to every test.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.needs import needs

#: The test certificate, for localhost and 127.0.0.1.
CERT = pathlib.Path(__file__).parent / "asyncio" / "localhost.pem"

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

#: Seconds a proxy may take to listen.
STARTUP_TIMEOUT = 10


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on, now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    """Wait until the proxy accepts connections (it announces nothing else)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
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
def proxy_process(command: list[str], port: int, log: pathlib.Path) -> Iterator[None]:
    """Run a proxy, its output in ``log``, until it listens on ``port`` and the block ends."""
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


def tunnelled_to(log: pathlib.Path, port: int) -> bool:
    """Tell whether the proxy's log shows a connection to ``port``."""
    # tinyproxy logs each CONNECT with its target; Dante each connection.
    text = log.read_text()
    return f":{port}" in text or f".{port}" in text


def _tinyproxy(tmp_path: pathlib.Path, extra: str) -> Iterator[tuple[str, pathlib.Path]]:
    assert TINYPROXY is not None
    port = free_port()
    config = tmp_path / "tinyproxy.conf"
    log = tmp_path / "tinyproxy.log"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Connect\nMaxClients 20\n"
        f"Allow 127.0.0.1\n{extra}"
    )
    with proxy_process([TINYPROXY, "-d", "-c", str(config)], port, log):
        yield f"http://127.0.0.1:{port}", log


@pytest.fixture
def tinyproxy(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTP proxy without authentication: its address and its log."""
    yield from _tinyproxy(tmp_path, "")


@pytest.fixture
def tinyproxy_auth(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTP proxy that wants alice's credentials (s3cr3t): its address, without them."""
    yield from _tinyproxy(tmp_path, "BasicAuth alice s3cr3t\n")


@pytest.fixture
def https_proxy(
    tmp_path: pathlib.Path, tinyproxy: tuple[str, pathlib.Path]
) -> Iterator[tuple[str, pathlib.Path]]:
    """An HTTPS proxy: haproxy terminates TLS (:data:`CERT`) in front of tinyproxy.

    Its address and tinyproxy's log.
    """
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
