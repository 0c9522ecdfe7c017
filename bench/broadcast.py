"""broadcast() to many connections: portside against websockets, with a control.

    python -m bench.broadcast                 # 1,000 and 10,000 connections, 3 rounds
    python -m bench.broadcast --quick         # 1,000 connections, 1 round
    python -m bench.broadcast --json out.json

For each row (a number of connections) and each round, every contender runs in
turn -- forward in odd rounds, backward in even ones -- on a fresh server
process (``bench/servers/broadcast_server.py``, pinned to CPU 1) whose
connections are opened by ``--client-processes`` reader processes
(``bench/clients/broadcast_readers.py``, pinned to CPU 0; 2,500 connections
each at most, so that no process needs more than a few thousand file
descriptors; each raises its soft limit to the hard one). The server then calls
``broadcast()`` ``--messages`` times with a 256-byte text message, one call per
turn of its event loop. Two figures per run:

- **delivered/s**: messages received by all clients, divided by the time from
  the first broadcast to the moment the last connection received its last
  message;
- **CPU/broadcast**: the server's CPU time (user + system) over the broadcasts,
  divided by their number.

``portside-again`` is the control: portside a second time, whose ratio to
portside shows how much two runs of the same code differ on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import Launcher, free_port, stop_all, stop_process, tail

CONTENDERS = {"portside": "portside", "websockets": "websockets", "portside-again": "portside"}
MAX_PER_CLIENT = 2500


@dataclass
class Sample:
    delivered_per_s: float
    cpu_per_broadcast: float
    wall_per_broadcast: float
    user: float
    system: float
    skipped: int | None
    complete: bool


@dataclass
class Row:
    connections: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def read_line(popen: subprocess.Popen[bytes], what: str, log: Path, timeout: float) -> str:
    """The next line of a child's stdout, or a failure that says why."""
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([popen.stdout], [], [], 0.5)
        if ready:
            line = popen.stdout.readline()
            if line:
                return line.decode().strip()
        if popen.poll() is not None:
            raise RuntimeError(f"{what} exited with {popen.returncode}:\n{tail(log)}")
    raise RuntimeError(f"{what} timed out:\n{tail(log)}")


def run_once(launcher: Launcher, lib: str, connections: int, args: argparse.Namespace) -> Sample:
    port = free_port()
    server_log = launcher.log_path(f"broadcast-{lib}-{connections}")
    server = launcher.spawn(
        "bench.servers.broadcast_server",
        [
            f"--lib={lib}",
            f"--port={port}",
            f"--connections={connections}",
            f"--messages={args.messages}",
            f"--size={args.size}",
            f"--loop={args.loop}",
        ],
        cpu=1,
        log=server_log,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    clients: list[subprocess.Popen[bytes]] = []
    try:
        assert read_line(server, "server", server_log, 30) == "listening"
        processes = max(args.client_processes, -(-connections // MAX_PER_CLIENT))
        shares = [
            connections // processes + (i < connections % processes) for i in range(processes)
        ]
        logs = []
        for i, share in enumerate(shares):
            log = launcher.log_path(f"readers-{lib}-{connections}-{i}")
            logs.append(log)
            clients.append(
                launcher.spawn(
                    "bench.clients.broadcast_readers",
                    [
                        f"--port={port}",
                        f"--connections={share}",
                        f"--messages={args.messages}",
                        f"--size={args.size}",
                    ],
                    cpu=0,
                    log=log,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
        for client, log in zip(clients, logs, strict=True):
            assert read_line(client, "client", log, 120) == "connected"
        assert read_line(server, "server", server_log, 60) == "ready"
        assert server.stdin is not None
        server.stdin.write(b"go\n")
        server.stdin.flush()
        result = json.loads(read_line(server, "server", server_log, 600))
        done = [
            json.loads(read_line(c, "client", log, 600))
            for c, log in zip(clients, logs, strict=True)
        ]
    finally:
        for popen in [server, *clients]:
            if popen.stdin is not None:
                with contextlib.suppress(OSError):
                    popen.stdin.close()
        for popen in [*clients, server]:
            stop_process(popen)
    received = sum(d["messages"] for d in done)
    elapsed = max(d["done"] for d in done) - result["start"]
    return Sample(
        delivered_per_s=received / elapsed if elapsed > 0 else 0.0,
        cpu_per_broadcast=result["cpu"] / args.messages,
        wall_per_broadcast=result["wall"] / args.messages,
        user=result["user"] / args.messages,
        system=result["system"] / args.messages,
        skipped=result["skipped"],
        complete=all(d["complete"] for d in done),
    )


def median(samples: list[Sample], attribute: str) -> float:
    return float(statistics.median(getattr(s, attribute) for s in samples))


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"broadcast() of {args.size} B to N connections, {args.messages} broadcasts per run, "
        f"{args.rounds} round(s), {args.loop} loop; medians",
        "",
        "| connections | server | delivered/s | CPU/broadcast (ms) | user (ms) | system (ms) |"
        " wall/broadcast (ms) | skipped | complete |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        for name, samples in row.samples.items():
            skipped = {s.skipped for s in samples}
            lines.append(
                f"| {row.connections:,} | {name} | {median(samples, 'delivered_per_s'):,.0f} | "
                f"{median(samples, 'cpu_per_broadcast') * 1e3:.2f} | "
                f"{median(samples, 'user') * 1e3:.2f} | {median(samples, 'system') * 1e3:.2f} | "
                f"{median(samples, 'wall_per_broadcast') * 1e3:.2f} | "
                f"{'/'.join(str(s) for s in sorted(skipped, key=str))} | "
                f"{all(s.complete for s in samples)} |"
            )
    lines += [
        "",
        "| connections | delivered/s portside/websockets | CPU websockets/portside |"
        " control: delivered/s | control: CPU |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ours, theirs = row.samples.get("portside"), row.samples.get("websockets")
        again = row.samples.get("portside-again")
        if not ours or not theirs:
            continue

        def ratio(a: list[Sample] | None, b: list[Sample] | None, attribute: str) -> str:
            if not a or not b:
                return "-"
            return f"{median(a, attribute) / median(b, attribute):.2f}x"

        lines.append(
            f"| {row.connections:,} | {ratio(ours, theirs, 'delivered_per_s')} | "
            f"{ratio(theirs, ours, 'cpu_per_broadcast')} | "
            f"{ratio(again, ours, 'delivered_per_s')} | "
            f"{ratio(ours, again, 'cpu_per_broadcast')} |"
        )
    lines += [
        "",
        "Target: at least 3x websockets on both figures, read against the control band "
        "(portside-again/portside, ideally 1.00x).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.broadcast", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--connections", default="1000,10000", help="comma-separated rows")
    parser.add_argument("--messages", type=int, default=100, help="broadcasts per run")
    parser.add_argument("--size", type=int, default=256, help="message size in bytes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--servers", default=",".join(CONTENDERS))
    parser.add_argument("--quick", action="store_true", help="1,000 connections, one round")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--json", type=Path, help="save every sample as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.rounds = "1000", 1
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    rows = [Row(int(n)) for n in args.connections.split(",")]
    with tempfile.TemporaryDirectory(prefix="portside-broadcast-") as directory:
        launcher = Launcher(sys.executable, not args.no_pin, Path(directory))
        try:
            for row in rows:
                for round_number in range(args.rounds):
                    order = names if round_number % 2 == 0 else names[::-1]
                    for name in order:
                        print(
                            f"[{row.connections} connections, round {round_number + 1}] {name}",
                            file=sys.stderr,
                            flush=True,
                        )
                        sample = run_once(launcher, CONTENDERS[name], row.connections, args)
                        row.samples.setdefault(name, []).append(sample)
        except KeyboardInterrupt:
            stop_all()
            print("interrupted: the rows so far", file=sys.stderr)
        finally:
            stop_all()
    print(report(rows, args))
    if not launcher.pinned:
        print("\n(processes not pinned to cores)")
    if args.json is not None:
        data: dict[str, Any] = {
            "settings": vars(args) | {"json": str(args.json)},
            "rows": [
                {
                    "connections": r.connections,
                    "samples": {k: [vars(s) for s in v] for k, v in r.samples.items()},
                }
                for r in rows
            ],
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
