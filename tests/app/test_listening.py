"""Where portside serve listens: TLS (and client certificates), Unix sockets; the
console script."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest

import portside
from tests.app.helpers import ECHO_APP, greeting, serving, write_module

pytestmark = pytest.mark.slow

CERT = Path(__file__).resolve().parent.parent / "asyncio" / "localhost.pem"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "echoapp", ECHO_APP)
    return tmp_path


async def test_tls(app_dir: Path) -> None:
    async with serving("echoapp:app", "--certfile", str(CERT), cwd=app_dir) as server:
        context = ssl.create_default_context(cafile=str(CERT))
        async with portside.connect(f"wss://localhost:{server.port}/", ssl=context) as ws:
            assert (await greeting(ws))[1] in server.pids
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"


async def test_a_unix_socket_next_to_tcp(app_dir: Path) -> None:
    path = app_dir / "portside.sock"
    async with serving("echoapp:app", "--workers", "2", "--bind", f"unix:{path}", cwd=app_dir) as (
        server
    ):
        pids = set()
        for _ in range(200):  # the workers share the Unix socket: both take some
            async with portside.unix_connect(str(path), compression=None) as ws:
                pids.add((await greeting(ws))[1])
            if pids == set(server.pids):
                break
        assert pids == set(server.pids)
    assert not path.exists()  # removed when the server stops


async def test_client_certificates_with_ca_certs(app_dir: Path) -> None:
    async with serving(
        "echoapp:app", "--certfile", str(CERT), "--ca-certs", str(CERT), cwd=app_dir
    ) as server:
        without = ssl.create_default_context(cafile=str(CERT))
        with pytest.raises((ssl.SSLError, OSError, portside.InvalidHandshake)):
            async with portside.connect(f"wss://localhost:{server.port}/", ssl=without) as ws:
                await ws.recv()
        with_cert = ssl.create_default_context(cafile=str(CERT))
        with_cert.load_cert_chain(str(CERT))
        async with portside.connect(f"wss://localhost:{server.port}/", ssl=with_cert) as ws:
            assert (await greeting(ws))[1] in server.pids


async def test_a_bad_certificate_is_one_line(app_dir: Path) -> None:
    bogus = app_dir / "bogus.pem"
    bogus.write_text("not a certificate\n")
    result = subprocess.run(
        [sys.executable, "-m", "portside", "serve", "echoapp:app", "--certfile", str(bogus)],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("portside: error: TLS (--certfile, --keyfile, --ca-certs):")


def test_the_console_script() -> None:
    script = Path(sys.executable).parent / "portside"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == f"portside {portside.__version__}\n"
