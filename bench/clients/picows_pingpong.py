"""Ping-pong load from picows' client (callback API) on uvloop.

Each connection sends a binary message and sends it again as soon as the whole
echo has arrived. picows' client is the fastest available, so it is rarely the
bottleneck. Prints ``{"count", "seconds", "rate"}`` for the measuring window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.clients.common import emit, insecure_ssl_context, measure
from bench.payloads import binary_payload
from bench.runtime import run_on_loop

MAX_FRAME_SIZE = 1 << 30
CLOSE_TIMEOUT = 30.0


class Load:
    """State shared by every connection of the client."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.in_flight = 0
        self.stopping = False
        # Set once stopping and no message awaits its echo, so that closing
        # never races an echo (servers would log that as an error).
        self.drained = asyncio.get_running_loop().create_future()
        self.errors: list[str] = []

    def stop(self) -> None:
        self.stopping = True
        self.check_drained()

    def check_drained(self) -> None:
        if self.stopping and self.in_flight == 0 and not self.drained.done():
            self.drained.set_result(None)


class PingPong(WSListener):
    """One connection: send, wait for the complete echo, send again."""

    def __init__(self, load: Load, payload: bytes) -> None:
        super().__init__()
        self.load = load
        self.payload = payload
        self.received = 0
        self.waiting = False
        # The first echo is checked byte for byte; later ones by length.
        self.first_echo: bytearray | None = bytearray()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send(self) -> None:
        assert self.transport is not None
        if not self.waiting:
            self.waiting = True
            self.load.in_flight += 1
        self.transport.send(WSMsgType.BINARY, self.payload)

    def settle(self) -> None:
        """No echo is awaited on this connection any more."""
        if self.waiting:
            self.waiting = False
            self.load.in_flight -= 1
            self.load.check_drained()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
            self.received += frame.payload_size
            if self.first_echo is not None:
                self.first_echo += frame.get_payload_as_bytes()
            if not frame.fin:
                return
            if self.first_echo is not None:
                ok = self.first_echo == self.payload
                self.first_echo = None
            else:
                ok = self.received == len(self.payload)
            self.received = 0
            if not ok:
                self.fail("the echo differs from the message sent")
                return
            self.load.round_trips += 1
            if self.load.stopping:
                self.settle()
            else:
                self.send()
        elif kind is WSMsgType.CLOSE:
            transport.disconnect()
        elif kind is WSMsgType.TEXT:
            self.fail("received a text message, expected binary")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.waiting:
            if not self.load.stopping:
                self.load.errors.append("the server closed the connection during the run")
            self.settle()

    def fail(self, reason: str) -> None:
        self.load.errors.append(reason)
        self.settle()
        if self.transport is not None:
            self.transport.disconnect()


async def run(url: str, size: int, connections: int, warmup: float, duration: float) -> int:
    load = Load()
    payload = binary_payload(size)
    ssl_context = insecure_ssl_context() if url.startswith("wss:") else None
    opened = await asyncio.gather(
        *(
            ws_connect(
                lambda: PingPong(load, payload),
                url,
                ssl_context=ssl_context,
                max_frame_size=MAX_FRAME_SIZE,
            )
            for _ in range(connections)
        )
    )
    clients = [listener for _, listener in opened if isinstance(listener, PingPong)]
    for client in clients:
        client.send()
    window = await measure(lambda: load.round_trips, warmup, duration)
    load.stop()
    await asyncio.wait_for(load.drained, CLOSE_TIMEOUT)
    for transport, _ in opened:
        transport.send_close(WSCloseCode.OK)
    await asyncio.wait_for(
        asyncio.gather(*(transport.wait_disconnected() for transport, _ in opened)),
        CLOSE_TIMEOUT,
    )
    if load.errors:
        print(f"picows client: {len(load.errors)} errors, first: {load.errors[0]}", file=sys.stderr)
        return 1
    emit({**window.as_dict(), "connections": connections})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--size", type=int, required=True, help="message size in bytes")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    return run_on_loop(
        run(args.url, args.size, args.connections, args.warmup, args.duration), "uvloop"
    )


if __name__ == "__main__":
    raise SystemExit(main())
