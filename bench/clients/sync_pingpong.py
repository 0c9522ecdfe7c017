"""Ping-pong load from a threading client: portside.sync's or websockets.sync's.

One connection sends a binary message and sends it again as soon as the whole
echo has arrived (``ws.send(m); ws.recv()``), in the main thread. The first echo
is compared byte for byte, the others by length. Prints ``{"count", "seconds",
"rate"}`` for the measuring window, which it announces on stdout as it starts
and ends (checked between two round trips, so at most one round trip late).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.clients.common import Window, emit, insecure_ssl_context
from bench.payloads import binary_payload


def open_connection(library: str, url: str) -> Any:
    ssl_context = insecure_ssl_context() if url.startswith("wss:") else None
    options: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": None}
    if ssl_context is not None:
        options["ssl"] = ssl_context
    if library == "portside":
        from portside.sync.client import connect

        return connect(url, **options)
    from websockets.sync.client import connect as ws_connect

    return ws_connect(url, **options)


def run(library: str, url: str, size: int, warmup: float, duration: float) -> int:
    payload = binary_payload(size)
    with open_connection(library, url) as ws:
        send, recv = ws.send, ws.recv
        send(payload)
        if recv() != payload:
            raise SystemExit("the echo differs from the message sent")
        start = time.perf_counter()
        window_start = start + warmup
        window_end = window_start + duration
        count = 0
        now = start
        while now < window_start:
            send(payload)
            if len(recv()) != size:
                raise SystemExit("the echo has the wrong length")
            now = time.perf_counter()
        emit({"event": "window-start"})
        first = now
        while now < window_end:
            send(payload)
            if len(recv()) != size:
                raise SystemExit("the echo has the wrong length")
            count += 1
            now = time.perf_counter()
        emit({"event": "window-end"})
        window = Window(count, now - first)
    emit({**window.as_dict(), "connections": 1, "library": library})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", choices=("portside", "websockets"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--size", type=int, required=True, help="message size in bytes")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    return run(args.library, args.url, args.size, args.warmup, args.duration)


if __name__ == "__main__":
    raise SystemExit(main())
