"""User-space instructions per echoed message, or per handshake, counted by callgrind.

Round trips per second move by 5-10 % between runs on a shared machine; the
instructions a server executes per message do not (they vary by well under 1 %),
so this is the measure to compare two versions of the hot path with. It counts
user space only: the kernel's share (the same ``read`` and ``write`` per message
for every server here) is not in it.

Run: ``python -m bench.instructions [--servers portside,picows] [--loop uvloop]
[--size 256] [--connections 64]`` (needs ``valgrind``). Each server runs under
callgrind on core 1, driven by the picows load client on core 0; the counters
are zeroed when the client's measuring window opens and dumped when it closes.
With ``--handshakes`` the client is the harness's churn client instead
(``--connections`` at a time, 50 by default there), and the count is of opening
and closing handshakes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.procs import free_port
from bench.runtime import LOOPS

SERVERS = ("portside", "portside_app", "websockets", "aiohttp", "picows")
STARTUP_TIMEOUT = 120.0  # a server under callgrind starts some 50 times slower


def taskset(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until the server under callgrind accepts connections."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.2)
        else:
            return
    raise SystemExit(f"the server did not listen on port {port} in {STARTUP_TIMEOUT:.0f} s")


def total_instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no instruction total in {dump}")


def measure(server: str, loop: str, client: Callable[[int], list[str]]) -> float:
    """Instructions per message (or per handshake) of one server.

    ``client(port)`` is the load client's command line (``python -m`` arguments).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="portside-callgrind-") as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            *taskset(1),
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            f"bench.servers.{server}_echo",
            "--port",
            str(port),
            "--loop",
            loop,
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, process)
            count = drive(process.pid, client(port))
        finally:
            process.terminate()
            process.wait()
        dumps = sorted(Path(directory).glob("callgrind.out.*"))
        if not dumps:
            raise SystemExit("callgrind wrote no dump for the measuring window")
        return total_instructions(dumps[0]) / count


def callgrind_control(action: str, pid: int) -> None:
    subprocess.run(["callgrind_control", action, str(pid)], capture_output=True, check=True)


def echo_client(port: int, size: int, connections: int, duration: float) -> list[str]:
    """The ping-pong load client's command line."""
    return [
        "bench.clients.picows_pingpong",
        "--url",
        f"ws://127.0.0.1:{port}/",
        "--size",
        str(size),
        "--connections",
        str(connections),
        "--warmup",
        "3",
        "--duration",
        str(duration),
    ]


def handshake_client(port: int, connections: int, duration: float) -> list[str]:
    """The churn client's command line."""
    return [
        "bench.clients.handshakes",
        "--port",
        str(port),
        "--concurrency",
        str(connections),
        "--warmup",
        "3",
        "--duration",
        str(duration),
    ]


def drive(pid: int, client_args: list[str]) -> int:
    """Run the load client; zero the counters at its window's start, dump at its end."""
    client = subprocess.Popen(
        [*taskset(0), sys.executable, "-m", *client_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    count = 0
    for line in client.stdout:
        event = json.loads(line)
        if event.get("event") == "window-start":
            subprocess.run(
                ["callgrind_control", "--zero", str(pid)], capture_output=True, check=True
            )
        elif event.get("event") == "window-end":
            subprocess.run(
                ["callgrind_control", "--dump", str(pid)], capture_output=True, check=True
            )
        elif "count" in event:
            count = int(event["count"])
    if client.wait() != 0 or count == 0:
        raise SystemExit("the load client failed")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="portside,picows", help="comma-separated")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    parser.add_argument("--size", type=int, default=256, help="message size in bytes")
    parser.add_argument(
        "--connections",
        type=int,
        help="connections at a time (default: 64 echoing, 50 with --handshakes)",
    )
    parser.add_argument("--duration", type=float, default=6.0, help="measuring window, s")
    parser.add_argument(
        "--handshakes",
        action="store_true",
        help="count per opening + closing handshake, under connection churn",
    )
    options = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    servers = options.servers.split(",")
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)}; choose among {', '.join(SERVERS)}")
    if options.handshakes:
        connections = options.connections or 50
        client = partial(handshake_client, connections=connections, duration=options.duration)
        title, unit = f"handshakes, {connections} at a time, {options.loop}", "handshake"
    else:
        connections = options.connections or 64
        client = partial(
            echo_client, size=options.size, connections=connections, duration=options.duration
        )
        title, unit = f"{options.size} B, {connections} conns, {options.loop}", "message"
    results = {server: measure(server, options.loop, client) for server in servers}
    print(title)
    print(f"{'server':12} {'instructions per ' + unit:>26}")
    for server, per_message in results.items():
        print(f"{server:12} {per_message:26,.0f}")
    if "portside" in results:
        for server, per_message in results.items():
            if server != "portside":
                print(
                    f"portside/{server}: {results['portside'] / per_message:.2f}x the instructions"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
