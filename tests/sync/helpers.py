"""Helpers for tests of the threading API over real loopback sockets."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from websockets.sync.client import ClientConnection as WsClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import ServerConnection as WsServerConnection
from websockets.sync.server import serve as ws_serve

from portside.sync.client import ClientConnection, connect
from portside.sync.server import Server, ServerConnection, serve, unix_serve
from tests.framing import unmask_frames, upgrade_request

# Long enough for a loaded machine; only a hung test waits this long.
TIMEOUT = 10.0

_S = TypeVar("_S", bound="ServesForever")


class ServesForever(Protocol):
    """A threading server: portside's or websockets'."""

    def serve_forever(self) -> None: ...

    def shutdown(self) -> None: ...


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def url(server: Server, path: str = "/") -> str:
    host, port = server.socket.getsockname()[:2]
    return f"ws://{host}:{port}{path}"


@contextlib.contextmanager
def serving(server: _S) -> Iterator[_S]:
    """Run ``server.serve_forever()`` in a thread; shut the server down and join it on exit.

    portside's threading server, or websockets' (the same API).
    """
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()


@contextlib.contextmanager
def running(handler: Callable[[ServerConnection], Any] = echo, **kwargs: Any) -> Iterator[Server]:
    """A server on a free port, serving in a thread; shut down and joined on exit."""
    kwargs.setdefault("ping_interval", None)
    if "sock" not in kwargs:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
    with serving(serve(handler, **kwargs)) as server:
        yield server


# websockets' threading peers. Their threads end a moment after their connection
# closes, and neither ``close()`` nor ``shutdown()`` waits for all of them: no
# version joins a connection's keepalive thread, and websockets 16 (the dev pin
# on Python 3.10) returns from ``shutdown()`` without waiting for the connection
# handler threads. These helpers wait for them, so that a thread left running
# after a test is portside's.


def _join_websockets_threads(
    connection: WsClientConnection | WsServerConnection, *first: threading.Thread
) -> None:
    # The keepalive thread after the thread that starts it, if any.
    for thread in (*first, connection.keepalive_thread, connection.recv_events_thread):
        if thread is not None:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), f"websockets' {thread} still runs after its connection"


@contextlib.contextmanager
def websockets_sync_server(handler: Callable[[Any], None], **kwargs: Any) -> Iterator[int]:
    """websockets' threading server on a free port, serving in a thread; yields its port.

    On exit the server is shut down and every thread it started has ended. Each
    connection records the thread that serves it when it is created, before the
    opening handshake: every client that connected has its connection recorded.
    """
    connections: list[tuple[threading.Thread, WsServerConnection]] = []

    class RecordedConnection(WsServerConnection):
        def __init__(self, *args: Any, **options: Any) -> None:
            super().__init__(*args, **options)
            connections.append((threading.current_thread(), self))

    peer = ws_serve(handler, "127.0.0.1", 0, create_connection=RecordedConnection, **kwargs)
    with serving(peer) as server:
        yield server.socket.getsockname()[1]
    for handler_thread, connection in connections:
        _join_websockets_threads(connection, handler_thread)


@contextlib.contextmanager
def websockets_sync_client(uri: str, **kwargs: Any) -> Iterator[WsClientConnection]:
    """websockets' threading client, connected; on exit closed, and its threads ended."""
    ws = ws_connect(uri, **kwargs)
    with ws:
        yield ws
    _join_websockets_threads(ws)


@contextlib.contextmanager
def running_unix(handler: Callable[[ServerConnection], Any] = echo) -> Iterator[str]:
    """A server on a Unix socket in a temporary directory, serving in a thread; yields its path."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        with serving(unix_serve(handler, path, ping_interval=None)):
            yield path


@contextlib.contextmanager
def pair(**kwargs: Any) -> Iterator[tuple[ServerConnection, ClientConnection]]:
    """A server connection whose handler waits, and the client connected to it.

    ``client_`` options go to the client, the others to the server.
    """
    client_options = {
        key[len("client_") :]: kwargs.pop(key) for key in list(kwargs) if key.startswith("client_")
    }
    client_options.setdefault("ping_interval", None)
    opened: queue.Queue[ServerConnection] = queue.Queue()
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        opened.put(ws)
        done.wait()

    with running(handler, **kwargs) as server:
        with connect(url(server), **client_options) as client:
            try:
                yield opened.get(timeout=TIMEOUT), client
            finally:
                done.set()


@contextlib.contextmanager
def raw_http_server(respond: bytes, close: bool = True) -> Iterator[int]:
    """A TCP server answering every request with ``respond``; yields its port.

    It reads each request's head, answers, and closes the connection unless
    ``close`` is ``False`` (then the client waits for more).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sockets.append(sock)
            read_head(sock)
            if respond:
                sock.sendall(respond)
            if close:
                sock.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join()
        for sock in sockets:
            sock.close()


def read_head(sock: socket.socket) -> bytes:
    """Read from ``sock`` until the end of an HTTP head (or EOF); return what was read."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class RawClient:
    """A hand-driven client on a plain socket: sends exactly the bytes a test wants."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = b""

    @classmethod
    def connect(
        cls, server: Server, path: str = "/", extra: str = "", handshake: bool = True
    ) -> RawClient:
        host, port = server.socket.getsockname()[:2]
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        client = cls(sock)
        if handshake:
            sock.sendall(upgrade_request(host, port, path, extra))
            head = client.read_head()
            assert head.startswith(b"HTTP/1.1 101"), head
        return client

    def read_head(self) -> bytes:
        """Read the HTTP response head; what follows stays in ``self.head``."""
        head, _, self.head = read_head(self.sock).partition(b"\r\n\r\n")
        return head

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_closed(self) -> list[tuple[int, int, bytes]]:
        """Read every frame until the server closes the TCP connection."""
        data = self.head
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return unmask_frames(data)

    def read_all(self) -> bytes:
        data = self.head
        while chunk := self.sock.recv(65536):
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
