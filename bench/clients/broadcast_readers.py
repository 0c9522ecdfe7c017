"""Clients for bench.broadcast: open connections, then read and count frames.

Plain sockets and epoll, no WebSocket library: the opening handshake by hand
(in batches, so that the server's accept queue never overflows), then every
byte read is counted. All frames of a run have the same size, so bytes tell
messages. Prints ``connected`` once every connection is open, then one JSON
line when every connection has received ``--messages`` messages (or after
``--timeout`` seconds): the monotonic time the last one completed and the
messages received in all.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import sys
import time

REQUEST = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# Seconds between two passes over the ready connections.
BATCH_DELAY = 0.01


def frame_size(payload: int) -> int:
    # RFC 6455 5.2: 2 header bytes, plus 2 or 8 for the extended length.
    return payload + 2 + (0 if payload < 126 else 2 if payload < 65536 else 8)


def open_connections(port: int, count: int, batch: int) -> list[socket.socket]:
    request = REQUEST.format(port=port).encode()
    opened: list[socket.socket] = []
    while len(opened) < count:
        group = [
            socket.create_connection(("127.0.0.1", port))
            for _ in range(min(batch, count - len(opened)))
        ]
        for sock in group:
            sock.sendall(request)
        for sock in group:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("server closed during the handshake")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head.split(b"\r\n")[0].decode())
            if head.index(b"\r\n\r\n") + 4 != len(head):
                raise ConnectionError("frames arrived before the benchmark started")
            sock.setblocking(False)
        opened.extend(group)
    return opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sockets = open_connections(args.port, args.connections, args.batch)
    print("connected", flush=True)
    expected = args.messages * frame_size(args.size)
    remaining = {sock.fileno(): expected for sock in sockets}
    by_fd = {sock.fileno(): sock for sock in sockets}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    received = 0
    done = time.monotonic()
    deadline = time.monotonic() + args.timeout
    while remaining and time.monotonic() < deadline:
        events = poller.poll(1.0)
        for fd, _ in events:
            try:
                data = by_fd[fd].recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                remaining.pop(fd, None)
                continue
            received += len(data)
            left = remaining.get(fd)
            if left is not None:
                left -= len(data)
                if left <= 0:
                    del remaining[fd]
                    poller.unregister(fd)
                    done = time.monotonic()
                else:
                    remaining[fd] = left
        if events:
            # Let frames accumulate: a few per recv() rather than one, so that
            # the readers stay cheaper than the server they measure.
            time.sleep(BATCH_DELAY)
    result = {
        "done": done,
        "messages": received // frame_size(args.size),
        "complete": not remaining,
    }
    print(json.dumps(result), flush=True)
    sys.stdin.read()  # keep the connections open until the harness is done
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
