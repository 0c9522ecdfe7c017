"""The subscribers: ``python -m bench.fanout.subscribers --kind KIND --port PORT --clients N``.

Opens N WebSocket connections and subscribes each (portside: until its
``subscribed`` frame; websockets: until the server's ``subscribed``; socket.io:
engine.io's open packet, then the namespace's CONNECT). Then, so that the client
side costs little per message, most connections only count the bytes they
receive and look for the end marker at the end of each read; ``--sample``
connections parse every frame, count the messages and read the publishing time
out of the latency phase's payloads.

Prints one JSON object per line: ``{"subscribed": N}``; once every connection
has seen the throughput phase's end marker ``{"done_ns": ..., "bytes": [min,
max], "counts": [...]}``; once every sampled connection has seen the latency
phase's end marker ``{"latencies_ns": [...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import time
from typing import Any

from bench.fanout.common import END_LATENCY, END_THROUGHPUT, family
from bench.runtime import raise_nofile_limit, run_on_loop

STAMP = re.compile(rb"L (\d+) (\d+) ")
END_T = END_THROUGHPUT.encode()
END_L = END_LATENCY.encode()


def masked_text(text: str) -> bytes:
    """A masked text frame (client to server), for short control messages."""
    payload = text.encode()
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + key + body


class Subscriber(asyncio.Protocol):
    def __init__(self, kind: str, sampled: bool, run: Run) -> None:
        self.kind = kind
        self.sampled = sampled
        self.run = run
        self.buffer = bytearray()
        self.handshaking = True
        self.subscribed = False
        self.bytes = 0
        self.count = 0
        self.done_throughput = False
        self.done_latency = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        path = "/socket.io/?EIO=4&transport=websocket" if self.kind == "socketio-redis" else "/sub"
        transport.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if self.subscribed and not self.sampled:
            # The fast path: count, and look for the end marker.
            if not self.done_throughput:
                self.bytes += len(data)
                if END_T in data[-64:]:
                    self.done_throughput = True
                    self.run.throughput_done(self)
            return
        self.buffer += data
        if self.handshaking:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(bytes(self.buffer[:200]).decode(errors="replace"))
            del self.buffer[: end + 4]
            self.handshaking = False
        for payload in self.frames():
            self.on_message(payload, len(payload))

    def frames(self) -> list[bytes]:
        buffer = self.buffer
        found = []
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if len(buffer) < offset + length:
                break
            found.append(bytes(buffer[offset : offset + length]))
            if self.subscribed:
                self.bytes += offset + length
            del buffer[: offset + length]
        return found

    def on_message(self, payload: bytes, size: int) -> None:
        if not self.subscribed:
            if self.kind == "socketio-redis":
                if payload.startswith(b"0"):
                    assert self.transport is not None
                    self.transport.write(masked_text("40"))
                    return
                if not payload.startswith(b"40"):
                    return
            elif b"subscribed" not in payload:
                return
            self.subscribed = True
            self.run.subscribed(self)
            if not self.sampled:
                self.buffer.clear()
            return
        if self.kind == "socketio-redis" and payload == b"2":
            assert self.transport is not None
            self.transport.write(masked_text("3"))
            return
        if not self.done_throughput:
            self.count += 1
            if END_T in payload:
                self.done_throughput = True
                self.run.throughput_done(self)
            return
        if END_L in payload:
            self.done_latency = True
            self.run.latency_done(self)
            return
        match = STAMP.search(payload)
        if match:
            self.run.latencies.append(time.monotonic_ns() - int(match.group(2)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not (self.done_throughput and (self.done_latency or not self.sampled)):
            self.run.failed(f"connection lost early: {exc}")


class Run:
    def __init__(self, total: int, sampled: int) -> None:
        self.total = total
        self.sampled_total = sampled
        self.subscribers: list[Subscriber] = []
        self.latencies: list[int] = []
        self._subscribed = 0
        self._throughput = 0
        self._latency = 0
        loop = asyncio.get_running_loop()
        self.all_subscribed = loop.create_future()
        self.all_throughput = loop.create_future()
        self.all_latency = loop.create_future()
        self.done_ns = 0

    def subscribed(self, subscriber: Subscriber) -> None:
        self._subscribed += 1
        if self._subscribed == self.total and not self.all_subscribed.done():
            self.all_subscribed.set_result(None)

    def throughput_done(self, subscriber: Subscriber) -> None:
        self._throughput += 1
        self.done_ns = time.monotonic_ns()
        if self._throughput == self.total and not self.all_throughput.done():
            self.all_throughput.set_result(None)

    def latency_done(self, subscriber: Subscriber) -> None:
        self._latency += 1
        if self._latency == self.sampled_total and not self.all_latency.done():
            self.all_latency.set_result(None)

    def failed(self, reason: str) -> None:
        for future in (self.all_subscribed, self.all_throughput, self.all_latency):
            if not future.done():
                future.set_exception(RuntimeError(reason))


async def main(kind: str, port: int, clients: int, sample: int) -> None:
    loop = asyncio.get_running_loop()
    run = Run(clients, sample)
    semaphore = asyncio.Semaphore(200)

    async def open_one(index: int) -> None:
        async with semaphore:
            subscriber = Subscriber(kind, index < sample, run)
            run.subscribers.append(subscriber)
            await loop.create_connection(lambda: subscriber, "127.0.0.1", port)

    await asyncio.gather(*(open_one(index) for index in range(clients)))
    await run.all_subscribed
    print(json.dumps({"subscribed": clients}), flush=True)
    await run.all_throughput
    sizes = [subscriber.bytes for subscriber in run.subscribers]
    counts = [subscriber.count for subscriber in run.subscribers if subscriber.sampled]
    print(
        json.dumps({"done_ns": run.done_ns, "bytes": [min(sizes), max(sizes)], "counts": counts}),
        flush=True,
    )
    await run.all_latency
    print(json.dumps({"latencies_ns": run.latencies}), flush=True)
    # Wait to be stopped, so that closing does not count.
    await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--loop", default="uvloop")
    args = parser.parse_args()
    raise_nofile_limit(args.clients + 100)
    run_on_loop(
        main(family(args.kind), args.port, args.clients, min(args.sample, args.clients)), args.loop
    )
