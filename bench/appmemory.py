"""Memory per connection of ``portside serve``, for docs/deployment.md's sizing table.

    python -m bench.appmemory [--connections 5000]

For each configuration, a fresh ``portside serve --workers 1`` serves the echo
handler; the idle client (:mod:`bench.clients.idle`) warms it up, opens N
connections, then sends one small text message on each (compressed when
permessage-deflate was negotiated). The worker's RSS is read, once settled,
before, after the handshakes and after the messages; the table gives bytes per
connection for both states.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.memory import settled_rss
from bench.procs import REPO_ROOT, LineReader, free_port

CONFIGS: dict[str, list[str]] = {
    "defaults (deflate)": [],
    "defaults, compression off": ["--compression", "none"],
    "tuned: 64 KiB messages, queue 4, 4 KiB reads": [
        "--compression",
        "none",
        "--max-size",
        "65536",
        "--max-queue",
        "4",
        "--read-limit",
        "4096",
        "--write-limit",
        "16384",
    ],
}


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def measure(name: str, flags: list[str], connections: int) -> dict[str, object]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portside",
            "serve",
            "bench.servers.apps:portside_echo",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--ping-interval",
            "none",
            *flags,
        ],
        cwd=REPO_ROOT,
        env=env,
    )
    client = None
    try:
        wait_port(port)
        (worker,) = psutil.Process(server.pid).children()
        compression = "--compression" not in flags
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.clients.idle",
                "--port",
                str(port),
                "--connections",
                str(connections),
                "--warmup-connections",
                "50",
                *(["--compression"] if compression else []),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        reader = LineReader(client.stdout)

        def step(command: str | None) -> dict[str, object]:
            if command is not None:
                assert client is not None
                assert client.stdin is not None
                client.stdin.write(command.encode() + b"\n")
                client.stdin.flush()
            answer = reader.read_json(120)
            assert answer is not None, "the client stopped"
            return answer

        step(None)  # ready
        before = settled_rss(worker.pid)
        opened = step("open")
        after_open = settled_rss(worker.pid)
        messaged = step("message")
        after_message = settled_rss(worker.pid)
        failed = int(opened["failed"]) + int(messaged["failed"])  # type: ignore[call-overload]
        return {
            "config": name,
            "flags": " ".join(flags) or "(none)",
            "connections": connections,
            "failed": failed,
            "idle_bytes": (after_open - before) / connections,
            "after_message_bytes": (after_message - before) / connections,
        }
    finally:
        if client is not None:
            client.kill()
            client.wait()
        server.terminate()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="save the results as JSON")
    args = parser.parse_args()
    results = [measure(name, flags, args.connections) for name, flags in CONFIGS.items()]
    print("| configuration | flags | idle, after the handshake | after one message |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['config']} | `{r['flags']}` | {float(r['idle_bytes']) / 1024:.1f} KiB | "  # type: ignore[arg-type]
            f"{float(r['after_message_bytes']) / 1024:.1f} KiB |"  # type: ignore[arg-type]
            + (f" ({r['failed']} failed)" if r["failed"] else "")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
