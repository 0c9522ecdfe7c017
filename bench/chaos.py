"""Chaos: well-behaved clients among clients that misbehave every way TCP allows.

Run: ``python -m bench.chaos [--duration 120] [--well-behaved 200] [--loop uvloop]``.

One portside server process (bench.soak's, with keepalive pings every 2 s,
2 s to answer, 2 s to close). One process of well-behaved clients (bench.soak's
client: a numbered message every 0.1 s per connection, each echo checked). And,
during ``--duration`` seconds, processes of peers that:

- vanish: 100 connections, then the process is killed (SIGKILL), every 10 s;
- reset: 100 connections closed with a TCP RST (SO_LINGER 0), every 10 s;
- half-open: 100 connections whose process is frozen (SIGSTOP): the kernel
  still acknowledges, the peer never answers a ping or reads again;
- stall mid-frame: 100 connections that send half a frame, then nothing;
- storm: 500 connections opened at once and closed at once, every 10 s.

Afterwards every misbehaving process is killed, and the server must come back
to its baseline: as many connections as the well-behaved clients hold, and the
RSS it had before the chaos, within 10 % or 8 MiB (measured after
``malloc_trim(0)``: glibc keeps freed memory for reuse, which is not a leak;
what remains is Python's own allocator, whose arenas are freed only when empty).
The well-behaved clients must have lost no message and dropped no connection.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.soak import Server, raise_fd_limit, read_counters, run_loop, spawn

KINDS = ("vanish", "reset", "half-open", "stall", "storm")


async def handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


def masked_frame(payload: bytes) -> bytes:
    """A masked binary frame (RFC 6455 5.2), with a zero key: the payload as is."""
    return struct.pack("!BBH", 0x82, 0x80 | 126, len(payload)) + bytes(4) + payload


async def peer(options: argparse.Namespace) -> None:
    """One misbehaving process; prints "ready" once its connections are open."""
    port, count = options.port, options.count
    frame = masked_frame(bytes(1000))
    if options.kind in ("vanish", "half-open", "stall"):
        connections = [await handshake(port) for _ in range(count)]
        for _, writer in connections:
            writer.write(frame if options.kind != "stall" else frame[:500])
        print("ready", flush=True)
        await asyncio.Event().wait()  # until killed
    for _ in range(options.waves):
        if options.kind == "reset":
            connections = [await handshake(port) for _ in range(count)]
            for _, writer in connections:
                writer.write(frame)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
        else:  # storm
            opened = await asyncio.gather(
                *(handshake(port) for _ in range(count)), return_exceptions=True
            )
            for connection in opened:
                if isinstance(connection, tuple):
                    connection[1].close()
        print("wave", flush=True)
        await asyncio.sleep(options.interval)


class Peers:
    """The misbehaving processes of one kind."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, kind: str, port: int, count: int, waves: int = 1) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.chaos",
                "peer",
                "--kind",
                kind,
                "--port",
                str(port),
                "--count",
                str(count),
                "--waves",
                str(waves),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait()


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        raise SystemExit(f"a chaos peer did not start: {line!r}")


def trimmed_rss(server: Server) -> float:
    stats = server.stats_trimmed()
    return stats["VmRSS"] / 1024


def run(options: argparse.Namespace) -> int:
    limit = raise_fd_limit()
    print(f"open files limit: {limit}", flush=True)
    server = Server(options.loop, 2.0, 2.0)
    port = server.port
    url = f"ws://127.0.0.1:{port}/"
    settle = 15.0
    well_behaved = spawn(
        "client",
        "--url",
        url,
        "--first",
        "0",
        "--count",
        str(options.well_behaved),
        "--seconds",
        str(settle + options.duration + 45),
        "--ramp",
        "5",
        "--period",
        "0.1",
        "--loop",
        options.loop,
    )
    counters: dict[str, Any] = {}
    time.sleep(settle)
    read_counters(well_behaved, counters)
    baseline = server.stats_trimmed()
    print(f"baseline: {json.dumps(baseline)}", flush=True)
    peers = Peers()
    half_open = peers.start("half-open", port, 100)
    wait_ready(half_open)
    half_open.send_signal(signal.SIGSTOP)
    stall = peers.start("stall", port, 100)
    wait_ready(stall)
    waves = max(1, int(options.duration // 10))
    peers.start("reset", port, 100, waves)
    peers.start("storm", port, 500, waves)
    started = time.monotonic()
    peak_connections = 0
    vanished = 0
    while time.monotonic() - started < options.duration:
        vanish = peers.start("vanish", port, 100)
        wait_ready(vanish)
        stats = server.stats()
        peak_connections = max(peak_connections, stats["connections"])
        vanish.kill()
        vanish.wait()
        vanished += 100
        read_counters(well_behaved, counters)
        print(
            json.dumps(
                {
                    "t": round(time.monotonic() - started),
                    "connections": stats["connections"],
                    "rss_mib": round(stats["VmRSS"] / 1024, 1),
                    "well_behaved_received": counters.get("received", 0),
                }
            ),
            flush=True,
        )
        time.sleep(10)
    peers.kill_all()
    # Dead peers are found by keepalive (2 s + 2 s) and let go of (2 s more).
    deadline = time.monotonic() + 60
    while True:
        stats = server.stats()
        if stats["connections"] <= baseline["connections"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    after = server.stats_trimmed()
    well_behaved.wait(180)
    read_counters(well_behaved, counters)
    server.stop()
    rss_growth = (after["VmRSS"] - baseline["VmRSS"]) / baseline["VmRSS"]
    result = {
        "duration_s": options.duration,
        "loop": options.loop,
        "well_behaved_connections": options.well_behaved,
        "misbehaving": {
            "vanished": vanished,
            "reset": 100 * waves,
            "half_open": 100,
            "stalled_mid_frame": 100,
            "storm": 500 * waves,
        },
        "peak_connections": peak_connections,
        "baseline": baseline,
        "after": after,
        "rss_growth": rss_growth,
        "well_behaved": {
            k: counters.get(k) for k in ("opened", "sent", "received", "lost", "dropped")
        },
        "errors": counters.get("errors", [])[:10],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }
    print(json.dumps(result, indent=1))
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(result, indent=1) + "\n")
    ok = (
        counters.get("lost") == 0
        and counters.get("dropped") == 0
        and counters.get("opened") == options.well_behaved
        and after["connections"] == baseline["connections"]
        and after["VmRSS"] - baseline["VmRSS"] < max(0.10 * baseline["VmRSS"], 8 * 1024)
    )
    print("chaos: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("peer")
    one.add_argument("--kind", choices=KINDS, required=True)
    one.add_argument("--port", type=int, required=True)
    one.add_argument("--count", type=int, default=100)
    one.add_argument("--waves", type=int, default=1)
    one.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of chaos")
    parser.add_argument("--well-behaved", type=int, default=200)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--out", default="docs/chaos.json")
    options = parser.parse_args(argv)
    if options.command == "peer":
        raise_fd_limit()
        run_loop(peer(options), "asyncio")
        return 0
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
