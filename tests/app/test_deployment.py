"""docs/deployment.md, run: nginx and HAProxy as the page configures them, systemd's
socket activation and readiness protocol, and the seed programs' one-liners."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import portside
from tests.app.helpers import ECHO_APP, ServeProcess, greeting, serve_env, serving, write_module
from tests.needs import needs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOYMENT = ROOT / "docs" / "deployment.md"


def documented(name: str) -> str:
    """The code block that follows ``<!-- tested: name -->`` in docs/deployment.md."""
    text = DEPLOYMENT.read_text()
    match = re.search(rf"<!-- tested: {name} -->\n```\w*\n(.*?)```", text, re.S)
    assert match, f"docs/deployment.md has no block marked 'tested: {name}'"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "echoapp", ECHO_APP)
    write_module(tmp_path, "chat", ECHO_APP)
    return tmp_path


async def wait_port(port: int, process: asyncio.subprocess.Process, timeout: float = 10) -> None:
    """Wait until ``port`` accepts connections (or fail if ``process`` exits)."""

    async def attempt() -> None:
        while True:
            if process.returncode is not None:
                raise AssertionError(f"exited with status {process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    await asyncio.wait_for(attempt(), timeout)


@asynccontextmanager
async def proxy(command: list[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def server_stats(stats: Path, name: str) -> dict[str, str]:
    """What HAProxy's stats socket says of the backend server ``name`` (empty if
    the socket is not listening yet)."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(stats))
    except OSError:
        return {}
    writer.write(b"show stat\n")
    text = (await reader.read()).decode()
    writer.close()
    header, *rows = [line for line in text.splitlines() if line]
    names = header.lstrip("# ").split(",")
    for row in rows:
        fields = dict(zip(names, row.split(","), strict=False))
        if fields["svname"] == name:
            return fields
    return {}


async def haproxy_server_up(stats: Path, name: str, timeout: float = 60) -> dict[str, str]:
    """Wait until HAProxy's checks have found the server ``name`` fully up.

    Its status is then ``UP`` (not ``UP 1/3``: up, but not yet checked enough),
    and its last check completed with ``L7OK``; ``* L7OK`` while a check runs.
    HAProxy announces neither: ask its stats socket until then.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        fields = await server_stats(stats, name)
        if fields.get("status") == "UP" and fields["check_status"].lstrip("* ") == "L7OK":
            return fields
        if loop.time() > deadline:
            state = {key: fields.get(key) for key in ("status", "check_status", "check_code")}
            raise AssertionError(f"HAProxy's {name} not UP within {timeout} s: {state}")
        await asyncio.sleep(0.1)


async def drain_goes_through(server: ServeProcess, url: str) -> None:
    """Echo through the proxy, then SIGTERM portside: the client gets 1001."""
    clients = [await portside.connect(url, compression=None) for _ in range(8)]
    pids = set()
    for index, ws in enumerate(clients):
        _, pid = await greeting(ws)
        pids.add(pid)
        await ws.send(f"through the proxy {index}")
        assert await ws.recv() == f"through the proxy {index}"
    assert pids <= set(server.pids)
    server.signal(signal.SIGTERM)
    for ws in clients:
        await ws.wait_closed()
        assert ws.close_code == 1001
    assert await server.wait() == 0


@needs(shutil.which("nginx"), "needs nginx (apt install nginx)")
async def test_nginx_as_documented(app_dir: Path) -> None:
    port = free_port()
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        block = documented("nginx")
        assert "127.0.0.1:8000" in block
        assert "listen 80;" in block
        block = block.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        block = block.replace("listen 80;", f"listen 127.0.0.1:{port};")
        user = "user root;\n" if os.geteuid() == 0 else ""
        (app_dir / "logs").mkdir()
        config = app_dir / "nginx.conf"
        config.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {app_dir}/nginx.pid;\n"
            f"error_log {app_dir}/logs/error.log warn;\nevents {{}}\n"
            f"http {{\naccess_log off;\n{block}\n}}\n"
        )
        nginx = shutil.which("nginx")
        assert nginx is not None
        async with proxy([nginx, "-p", str(app_dir), "-c", str(config)]) as process:
            await wait_port(port, process)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200 OK")
            writer.close()
            await drain_goes_through(server, f"ws://127.0.0.1:{port}/")


@needs(shutil.which("haproxy"), "needs haproxy (apt install haproxy)")
async def test_haproxy_as_documented(app_dir: Path) -> None:
    port = free_port()
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        block = documented("haproxy")
        assert "127.0.0.1:8000" in block
        assert "bind :80" in block
        block = block.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        block = block.replace("bind :80", f"bind 127.0.0.1:{port}")
        config = app_dir / "haproxy.cfg"
        stats = app_dir / "haproxy.sock"
        config.write_text(
            f"global\n    pidfile {app_dir}/haproxy.pid\n    stats socket {stats}\n\n{block}"
        )
        haproxy = shutil.which("haproxy")
        assert haproxy is not None
        async with proxy([haproxy, "-db", "-f", str(config)]) as process:
            await wait_port(port, process)
            # HAProxy's own checks, as configured (an HTTP/1.0 GET /readyz), found
            # portside ready: what its stats socket says of the server.
            fields = await haproxy_server_up(stats, "chat1")
            assert fields["check_code"] == "200", fields
            await drain_goes_through(server, f"ws://127.0.0.1:{port}/")
            # portside's log has no line about HAProxy's checks.
            assert "readyz" not in server.text()
            assert "handshake failed" not in server.text()


@needs(
    shutil.which("systemd-socket-activate"), "needs systemd-socket-activate (apt install systemd)"
)
async def test_systemd_socket_activation_and_notify(app_dir: Path) -> None:
    activate = shutil.which("systemd-socket-activate")
    assert activate is not None
    unit = documented("systemd-service")
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "portside"
    assert argv[1:3] == ["serve", "chat:app"]
    # The documented command, with this interpreter instead of /srv/chat/.venv.
    command = [sys.executable, "-m", "portside", *argv[1:]]
    port = free_port()
    notify_path = app_dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    env = serve_env()
    passed = ["PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HOME", "PORTSIDE_NO_SPEEDUPS"]
    args = [activate, "-l", f"127.0.0.1:{port}", "-E", f"NOTIFY_SOCKET={notify_path}"]
    for name in passed:
        if name in env:
            args += ["-E", f"{name}={env[name]}"]
    process = await asyncio.create_subprocess_exec(
        *args,
        *command,
        cwd=str(app_dir),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    server = ServeProcess(process)
    loop = asyncio.get_running_loop()
    try:
        await server.wait_line(rf"Listening on 127\.0\.0\.1:{port}")
        # systemd-socket-activate starts portside on the first connection.
        ws = await portside.connect(f"ws://127.0.0.1:{port}/", compression=None)
        _, pid = await greeting(ws)
        await ws.send("activated")
        assert await ws.recv() == "activated"
        ready = await asyncio.wait_for(loop.sock_recv(notify, 4096), 10)
        assert b"READY=1" in ready.split(b"\n")
        assert b"STATUS=serving on 127.0.0.1:" in ready
        await server.wait_line(
            r"serving chat:app on 127\.0\.0\.1:\d+ \(from systemd\) with 2 workers"
        )
        assert "--bind is ignored" not in server.text()
        server.signal(signal.SIGTERM)
        stopping = await asyncio.wait_for(loop.sock_recv(notify, 4096), 10)
        assert b"STOPPING=1" in stopping.split(b"\n")
        await ws.wait_closed()
        assert ws.close_code == 1001
        assert await server.wait() == 0
        assert pid > 0
    finally:
        notify.close()
        await server.close()


@pytest.mark.parametrize(
    ("one_liner", "health"),
    [
        ("deployment:echo", None),
        ("deployment:echo_legacy", None),
        ("deployment:app", "/health/"),
    ],
)
async def test_the_seed_programs_one_liners(one_liner: str, health: str | None) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"portside serve {one_liner} --bind localhost:8765" in readme
    assert f"portside serve {one_liner} --bind localhost:8765" in DEPLOYMENT.read_text()
    async with serving(one_liner, cwd=ROOT / "examples") as server:
        url = server.url()
        ours = await portside.connect(url)
        await ours.send("before shutdown")
        assert await ours.recv() == "before shutdown"
        for path in [p for p in (health, "/healthz", "/readyz") if p]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head, _, body = (await reader.read()).partition(b"\r\n\r\n")
            writer.close()
            assert head.startswith(b"HTTP/1.1 200 OK"), (path, head)
            if path == health:
                assert body == b"OK\n"
        server.signal(signal.SIGTERM)
        with pytest.raises(portside.ConnectionClosedOK):
            await ours.recv()
        assert ours.close_code == 1001
        assert await server.wait() == 0
