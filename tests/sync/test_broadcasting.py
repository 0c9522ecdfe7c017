"""broadcast() in the threading API: frames, skipped connections, slow consumers."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from portside.exceptions import ConcurrencyError
from portside.sync.client import ClientConnection, connect
from portside.sync.server import ServerConnection, broadcast
from tests.framing import client_frame
from tests.sync.helpers import TIMEOUT, RawClient, running, url
from tests.sync.test_connection import wait_until


def gated(release: threading.Event) -> Iterator[str]:
    yield "first"
    assert release.wait(TIMEOUT)
    yield "last"


def test_every_open_connection_gets_the_message() -> None:
    connections: list[ServerConnection] = []
    lock = threading.Lock()
    joined = threading.Semaphore(0)
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        with lock:
            connections.append(ws)
        joined.release()
        done.wait(TIMEOUT)

    with running(handler) as server:
        clients: list[ClientConnection] = []
        try:
            # Compression on and off, since they get different frames.
            for i in range(6):
                clients.append(connect(url(server), compression="deflate" if i % 2 else None))
                assert joined.acquire(timeout=TIMEOUT)
            broadcast(connections, "hello " * 20)
            broadcast(connections, b"bytes")
            broadcast(connections, b"as text", text=True)
            broadcast(connections, "as bytes", text=False)
            for ws in clients:
                assert ws.recv(timeout=TIMEOUT) == "hello " * 20
                assert ws.recv(timeout=TIMEOUT) == b"bytes"
                assert ws.recv(timeout=TIMEOUT) == "as text"
                assert ws.recv(timeout=TIMEOUT) == b"as bytes"
        finally:
            done.set()
            for ws in clients:
                ws.close()


def test_client_connections_too() -> None:
    with running() as server:
        clients = [connect(url(server)) for _ in range(3)]
        try:
            broadcast(clients, "to the server")
            assert [ws.recv(timeout=TIMEOUT) for ws in clients] == ["to the server"] * 3
        finally:
            for ws in clients:
                ws.close()


def test_connections_not_open_and_fragmenting_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    with running() as server:
        closed = connect(url(server))
        closed.close()
        busy = connect(url(server))
        try:
            sender = threading.Thread(target=busy.send, args=(gated(release),))
            sender.start()
            # Until the generator yields its last piece, the message is half sent.
            wait_until(lambda: bool(busy.protocol._sending))
            broadcast([closed, busy], "skipped")
            assert "skipped broadcast: sending a fragmented message" in caplog.text
            if sys.version_info >= (3, 11):
                with pytest.raises(ExceptionGroup) as raised:  # noqa: F821
                    broadcast([closed, busy], "skipped", raise_exceptions=True)
                assert isinstance(raised.value.exceptions[0], ConcurrencyError)
            release.set()
            sender.join()
            # The echo: the whole message, with no broadcast in the middle.
            assert busy.recv(timeout=TIMEOUT) == "firstlast"
        finally:
            busy.close()


def test_a_slow_consumer_misses_messages() -> None:
    opened: list[ServerConnection] = []
    ready = threading.Event()

    def handler(ws: ServerConnection) -> None:
        opened.append(ws)
        ready.set()
        for _ in ws:
            pass

    with running(handler, write_limit=65536) as server, RawClient.connect(server) as raw:
        assert ready.wait(TIMEOUT)
        # The raw client reads nothing: once the socket is full, the frames
        # wait, and past write_limit the next messages are skipped.
        message = bytes(1 << 16)
        connection = opened[0]
        sent = 0
        while connection.broadcast_skips == 0:
            broadcast([connection], message)
            sent += 1
            assert sent < 10_000
        with connection._lock:
            assert connection._write_pending() <= connection.write_limit + len(message) + 14
        raw.send(client_frame(8, b"\x03\xe8"))


def test_failed_writes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(TypeError, match="str or bytes-like"):
        broadcast([], 42)  # type: ignore[arg-type]
    broadcast([], "nobody", max_workers=4)  # websockets' executor options are accepted
