"""The threading API's examples (examples/sync/), run as processes against websockets 17.4."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as websockets_connect
from websockets.sync.server import serve as websockets_serve

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "sync"
PORT = 8765  # the examples' port
TIMEOUT = 10.0

# The examples are run as written, on 8765: test runs on one machine take turns.
pytestmark = pytest.mark.portside_port(PORT)


def port_accepts() -> bool:
    try:
        socket.create_connection(("localhost", PORT), timeout=TIMEOUT).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def example_server(name: str) -> Iterator[subprocess.Popen[bytes]]:
    if port_accepts():
        pytest.fail(f"port {PORT} is already in use; the examples need it")
    process = subprocess.Popen(
        # -u: what the handler prints reaches the pipe at once.
        [sys.executable, "-u", str(EXAMPLES / name)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stop = threading.Event()
    try:
        # Nothing announces that the example listens: poll the port.
        while not port_accepts():
            if process.poll() is not None:
                assert process.stderr is not None
                pytest.fail(f"{name} exited with {process.returncode}: {process.stderr.read()!r}")
            stop.wait(0.05)
        yield process
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def websockets_server(handler: Any) -> Iterator[None]:
    with websockets_serve(handler, "localhost", PORT) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()
            thread.join()


def run_client(name: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_echo_server() -> None:
    with example_server("echo_server.py"), websockets_connect(f"ws://localhost:{PORT}") as ws:
        for message in ("Hello world!", b"\x00\x01", "☕" * 1000):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message


def test_hello_server() -> None:
    with example_server("hello_server.py") as process:
        with websockets_connect(f"ws://localhost:{PORT}") as ws:
            ws.send("Alice")
            assert ws.recv(timeout=TIMEOUT) == "Hello Alice!"
        # The handler printed both messages.
        assert process.stdout is not None
        assert process.stdout.readline() == b"<<< Alice\n"
        assert process.stdout.readline() == b">>> Hello Alice!\n"


def test_hello_client() -> None:
    def echo(websocket: Any) -> None:
        for message in websocket:
            websocket.send(message)

    with websockets_server(echo):
        assert run_client("hello_client.py") == "Hello world!\n"


def test_name_client() -> None:
    def greet(websocket: Any) -> None:
        name = websocket.recv()
        websocket.send(f"Hello {name}!")

    with websockets_server(greet):
        output = run_client("name_client.py", stdin="Bob\n")
    assert output == "What's your name? >>> Bob\n<<< Hello Bob!\n"


def test_echo_server_with_portside_hello_client() -> None:
    with example_server("echo_server.py"):
        assert run_client("hello_client.py") == "Hello world!\n"
