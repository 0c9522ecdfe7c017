"""Run the fan-out benchmark: ``python -m bench.fanout [--quick] [--clients 1000,10000]``.

For each number of clients, every contender (bench/fanout/__init__.py) runs in
turn, the order reversed every other round: a fresh server process pinned to
CPU 1; one subscriber process, the publisher and Redis pinned to CPU 0. Two
phases per sample:

- throughput: the publisher publishes M messages (64 bytes) as fast as each
  publish returns, then an end marker; deliveries per second = clients x M /
  (time the last subscriber saw the end marker - time the first publish
  started). Every subscriber must have received the same bytes, and the sampled
  ones every message;
- latency: K messages at a modest rate (no backlog builds up); the sampled
  subscribers read the publishing time out of each payload: end-to-end latency
  p50 and p99 (all processes read the same monotonic clock).

Prints a table per client count, the ratios portside/websockets (in-memory) and
portside/python-socketio (through Redis), and the control (portside-memory again
/ portside-memory): how far two runs of the same code differ here and now.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fanout.common import KINDS, REDIS_KINDS
from bench.procs import REPO_ROOT, LineReader

SERVER_CPU = "1"
CLIENT_CPU = "0"
TIMEOUT = float(os.environ.get("FANOUT_TIMEOUT", "600"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Children:
    def __init__(self, pin: bool, log_dir: Path) -> None:
        self.taskset = shutil.which("taskset") if pin and (os.cpu_count() or 1) >= 2 else None
        self.log_dir = log_dir
        self.live: list[subprocess.Popen[bytes]] = []
        self.env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

    def spawn(
        self, args: list[str], cpu: str, name: str, stdin: bool = False
    ) -> subprocess.Popen[bytes]:
        pin = [self.taskset, "-c", cpu] if self.taskset else []
        log = (self.log_dir / f"{len(self.live):03d}-{name}.log").open("wb")
        popen = subprocess.Popen(
            [*pin, *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        self.live.append(popen)
        return popen

    def stop_all(self) -> None:
        for popen in self.live:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGTERM)
        for popen in self.live:
            try:
                popen.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
        self.live.clear()


def expect(reader: LineReader, what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    while True:
        line = reader.readline(timeout)
        if line is None:
            raise RuntimeError(f"process exited while waiting for {what}")
        line = line.strip()
        if line == what:
            return {}
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            if what in data:
                return data


def sample(
    children: Children, kind: str, clients: int, messages: int, latency: tuple[int, float]
) -> dict[str, Any]:
    python = sys.executable
    redis_url = None
    try:
        if kind in REDIS_KINDS:
            redis_port = free_port()
            redis = children.spawn(
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--logfile",
                    "",
                    "--client-output-buffer-limit",
                    "pubsub",
                    "0",
                    "0",
                    "0",
                ],
                CLIENT_CPU,
                "redis",
            )
            reader = LineReader(redis.stdout)  # type: ignore[arg-type]
            while "Ready to accept connections" not in (reader.readline(30) or "EOF"):
                pass
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        port = free_port()
        extra = ["--redis", redis_url] if redis_url else []
        server = children.spawn(
            [python, "-m", "bench.fanout.server", "--kind", kind, "--port", str(port), *extra],
            SERVER_CPU,
            f"server-{kind}",
        )
        expect(LineReader(server.stdout), "ready", 60)  # type: ignore[arg-type]
        subscribers = children.spawn(
            [
                python,
                "-m",
                "bench.fanout.subscribers",
                "--kind",
                kind,
                "--port",
                str(port),
                "--clients",
                str(clients),
            ],
            CLIENT_CPU,
            f"subscribers-{kind}",
        )
        subscriber_out = LineReader(subscribers.stdout)  # type: ignore[arg-type]
        expect(subscriber_out, "subscribed")
        publisher = children.spawn(
            [python, "-m", "bench.fanout.publisher", "--kind", kind, "--port", str(port), *extra],
            CLIENT_CPU,
            f"publisher-{kind}",
            stdin=True,
        )
        publisher_out = LineReader(publisher.stdout)  # type: ignore[arg-type]
        expect(publisher_out, "ready", 60)
        assert publisher.stdin is not None
        publisher.stdin.write(f"throughput {messages}\n".encode())
        publisher.stdin.flush()
        start = expect(publisher_out, "start_ns")["start_ns"]
        done = expect(subscriber_out, "done_ns")
        low, high = done["bytes"]
        if low != high or low == 0:
            raise RuntimeError(f"subscribers received different byte counts: {low} to {high}")
        if any(count != messages + 1 for count in done["counts"]):
            raise RuntimeError(
                f"sampled subscribers missed messages: {sorted(set(done['counts']))}"
            )
        seconds = (done["done_ns"] - start) / 1e9
        publisher.stdin.write(f"latency {latency[0]} {latency[1]}\n".encode())
        publisher.stdin.flush()
        latencies = sorted(expect(subscriber_out, "latencies_ns")["latencies_ns"])
        return {
            "kind": kind,
            "clients": clients,
            "messages": messages,
            "seconds": seconds,
            "deliveries_per_s": clients * messages / seconds,
            "latency_p50_ms": statistics.median(latencies) / 1e6,
            "latency_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e6,
        }
    finally:
        children.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round")
    parser.add_argument("--clients", default="1000,10000", help="comma-separated client counts")
    parser.add_argument(
        "--deliveries",
        type=int,
        default=1_000_000,
        help="deliveries per throughput sample (messages = deliveries / clients)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.deliveries, args.rounds = 200_000, 1
    kinds = args.kinds.split(",")
    if any(kind in REDIS_KINDS for kind in kinds) and not shutil.which("redis-server"):
        sys.exit("the Redis rows need redis-server (apt install redis-server)")
    log_dir = Path(tempfile.mkdtemp(prefix="portside-fanout-"))
    children = Children(not args.no_pin, log_dir)
    results: list[dict[str, Any]] = []
    try:
        for clients in map(int, args.clients.split(",")):
            messages = max(20, args.deliveries // clients)
            # Well below every contender's capacity: no backlog, so latency is
            # the path's own (20 messages/s at 1,000 clients, 2/s at 10,000).
            rate = min(20.0, 20_000 / clients)
            for round_ in range(args.rounds):
                for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                    print(
                        f"{clients} clients, round {round_ + 1}: {kind}...",
                        file=sys.stderr,
                        flush=True,
                    )
                    result = sample(children, kind, clients, messages, (20, rate))
                    print(
                        f"  {result['deliveries_per_s']:,.0f} deliveries/s, p50 "
                        f"{result['latency_p50_ms']:.2f} ms, p99 {result['latency_p99_ms']:.2f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.append(result)
    except KeyboardInterrupt:
        print("interrupted: the rows so far", file=sys.stderr)
    finally:
        children.stop_all()
    report = render(results, pinned=children.taskset is not None)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=1))
    shutil.rmtree(log_dir, ignore_errors=True)


def render(results: list[dict[str, Any]], pinned: bool) -> str:
    lines = [
        f"Fan-out, one topic, 64-byte messages ({'pinned' if pinned else 'not pinned'}); "
        "medians over rounds.",
        "",
    ]
    for clients in sorted({result["clients"] for result in results}):
        rows = [result for result in results if result["clients"] == clients]
        medians: dict[str, dict[str, float]] = {}
        for kind in dict.fromkeys(result["kind"] for result in rows):
            own = [result for result in rows if result["kind"] == kind]
            medians[kind] = {
                key: statistics.median(result[key] for result in own)
                for key in ("deliveries_per_s", "latency_p50_ms", "latency_p99_ms")
            }
        lines += [
            f"### {clients:,} clients ({rows[0]['messages']:,} messages per sample)",
            "",
            "| contender | deliveries/s | latency p50 | latency p99 |",
            "| --- | ---: | ---: | ---: |",
        ]
        for kind, values in medians.items():
            lines.append(
                f"| {kind} | {values['deliveries_per_s']:,.0f} | {values['latency_p50_ms']:.2f} ms "
                f"| {values['latency_p99_ms']:.2f} ms |"
            )
        lines.append("")
        for numerator, denominator, target in (
            ("portside-memory", "websockets", 3.0),
            ("portside-redis", "socketio-redis", 3.0),
            ("portside-memory-again", "portside-memory", None),
        ):
            if numerator in medians and denominator in medians:
                ratio = (
                    medians[numerator]["deliveries_per_s"]
                    / medians[denominator]["deliveries_per_s"]
                )
                verdict = (
                    "control"
                    if target is None
                    else ("PASS" if ratio >= target else "FAIL") + f" (>= {target:.0f}x)"
                )
                lines.append(f"- {numerator} / {denominator}: {ratio:.2f}x {verdict}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
