"""Application servers side by side: ``portside serve`` against uvicorn and granian.

    python -m bench.appserver                 # the full run (about 10 minutes)
    python -m bench.appserver --quick         # one round, short windows (about 2 minutes)
    python -m bench.appserver --only storm    # the reconnect storm alone

Rows, each server run with ``--workers 2`` and driven by the same clients:

- ``echo``: 256 B binary messages in ping-pong on 64 connections (picows' client,
  :mod:`bench.clients.picows_pingpong`): round trips per second, and the servers'
  CPU time per message (all their processes: supervisor and workers).
- ``handshakes``: open and close connections, 50 at a time
  (:mod:`bench.clients.handshakes`): handshakes per second, failures.
- ``workers``: portside's CPU time per message in the echo row with ``--workers 1``
  and ``--workers 2``: the supervisor must add nothing to the hot path. On two
  cores the client competes with the workers, so the rate cannot be compared; CPU
  time per message can.
- ``storm``: 5,000 clients connect at once (:mod:`bench.clients.idle`) to a
  ``portside serve --workers 2`` that just said it is ready; the time until all are
  connected, and failures.

Every row has a control: a second portside server process ("portside-again"),
measured in the same rounds, whose ratio to the first shows the noise of the run.
Contenders run in turn within each round, in reverse order every other round.
portside runs its echo handler (``bench.servers.apps:portside_echo``), uvicorn and
granian the same echo as an ASGI app (``asgi_echo``), each with compression and
keepalive pings off and uvloop. Nothing is pinned: two workers need both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.procs import REPO_ROOT, Launcher, LineReader, free_port, run_client, stop_all

APP = "bench.servers.apps"


def server_command(name: str, port: int, workers: int) -> list[str]:
    """The command line of contender ``name`` on ``port``."""
    python = sys.executable
    if name.startswith("portside"):
        return [
            python,
            "-m",
            "portside",
            "serve",
            f"{APP}:portside_echo",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--compression",
            "none",
            "--ping-interval",
            "none",
            "--max-size",
            "none",
            "--log-level",
            "warning",
        ]
    if name == "uvicorn":
        return [
            python,
            "-m",
            "uvicorn",
            f"{APP}:asgi_echo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--ws-per-message-deflate",
            "false",
            "--ws-ping-interval",
            "3600",
            "--ws-max-size",
            str(1 << 30),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    if name == "granian":
        return [
            python,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            f"{APP}:asgi_echo",
        ]
    raise ValueError(name)


def tree_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class Server:
    """A contender's server process."""

    def __init__(self, name: str, workers: int, log_dir: Path) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.log = log_dir / f"{name}-{workers}-{self.port}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        with self.log.open("wb") as log:
            self.popen = subprocess.Popen(
                server_command(name, self.port, workers),
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every worker answers: one connection per worker would not prove it,
        so until ``/healthz`` answers and the process tree has its workers."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        children = psutil.Process(self.popen.pid).children(recursive=True)
                        if len(children) >= self.workers or self.workers == 1:
                            return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, 15)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait()


@dataclass
class Samples:
    """The values of one contender in one row, over the rounds."""

    values: list[float] = field(default_factory=list)
    cpu_per_message_us: list[float] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def cpu(self) -> float | None:
        return statistics.median(self.cpu_per_message_us) if self.cpu_per_message_us else None


def measure_echo(
    launcher: Launcher, server: Server, warmup: float, duration: float
) -> tuple[float, float]:
    """Round trips per second, and the server's CPU microseconds per message."""
    marks: list[float] = []
    run = run_client(
        launcher,
        "bench.clients.picows_pingpong",
        [
            "--url",
            f"ws://127.0.0.1:{server.port}/",
            "--size",
            "256",
            "--connections",
            "64",
            "--warmup",
            str(warmup),
            "--duration",
            str(duration),
        ],
        timeout=warmup + duration + 60,
        on_window_start=lambda pid: marks.append(tree_seconds(server.popen.pid)),
        on_window_end=lambda pid: marks.append(tree_seconds(server.popen.pid)),
    )
    if run.result is None or len(marks) != 2:
        raise RuntimeError(run.error or "no window")
    count = float(run.result["count"])
    # A round trip is a message received and one sent: per message is per round trip.
    return float(run.result["rate"]), (marks[1] - marks[0]) / count * 1e6


def measure_handshakes(
    launcher: Launcher, server: Server, warmup: float, duration: float
) -> tuple[float, int]:
    run = run_client(
        launcher,
        "bench.clients.handshakes",
        ["--port", str(server.port), "--warmup", str(warmup), "--duration", str(duration)],
        timeout=warmup + duration + 60,
    )
    if run.result is None:
        raise RuntimeError(run.error or "no result")
    return float(run.result["rate"]), int(run.result["failures"])


def measure_storm(server: Server, clients: int) -> tuple[float, int]:
    """Seconds until ``clients`` connections opened at once are all open; failures."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.clients.idle",
            "--port",
            str(server.port),
            "--connections",
            str(clients),
            "--concurrency",
            str(clients),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdin is not None
        assert client.stdout is not None
        reader = LineReader(client.stdout)
        reader.read_json(60)  # ready
        start = time.perf_counter()
        client.stdin.write(b"open\n")
        client.stdin.flush()
        answer = reader.read_json(300)
        elapsed = time.perf_counter() - start
        if answer is None:
            raise RuntimeError("the storm client stopped")
        return elapsed, int(answer["failed"])
    finally:
        client.kill()
        client.wait()


def measure_instructions(workers: int, duration: float) -> float:
    """User-space instructions per message in portside's workers, counted by callgrind.

    ``portside serve --workers N`` runs under ``valgrind --tool=callgrind
    --trace-children=yes``, so each worker is counted; the counters are zeroed
    when the client's window opens and dumped when it closes, and the workers'
    totals are added up. Under callgrind the workers, some 50 times slower, are
    the bottleneck with one worker as with two, so each handles its messages in
    batches alike: the difference is what the supervisor adds to a worker.
    """
    import shutil

    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed")
    from bench.instructions import total_instructions

    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="portside-appgrind-"))
    command = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        f"--callgrind-out-file={directory}/callgrind.%p",
        *server_command("portside", port, workers),
        "--timeout",
        "3600",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    server = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        pids: list[int] = []
        while len(pids) < workers:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("portside serve under callgrind did not start")
            time.sleep(0.5)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    pids = [p.pid for p in psutil.Process(server.pid).children()]
            except OSError:
                continue
        # Warm the workers up (first handshakes under callgrind are slow), so that
        # the load client's handshakes come within its timeout.
        warm_up(port, 128)

        def control(action: str) -> None:
            for pid in pids:
                subprocess.run(["callgrind_control", action, str(pid)], capture_output=True)

        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.clients.picows_pingpong",
                "--url",
                f"ws://127.0.0.1:{port}/",
                "--size",
                "256",
                "--connections",
                "64",
                "--warmup",
                "5",
                "--duration",
                str(duration),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        count = 0
        for line in client.stdout:
            event = json.loads(line)
            if event.get("event") == "window-start":
                control("--zero")
            elif event.get("event") == "window-end":
                control("--dump")
            elif "count" in event:
                count = int(event["count"])
        if client.wait() != 0 or count == 0:
            raise RuntimeError("the load client failed")
        total = 0
        for pid in pids:
            dumps = sorted(directory.glob(f"callgrind.{pid}.*"))
            if not dumps:
                raise RuntimeError(f"no callgrind dump for worker {pid}")
            total += total_instructions(dumps[0])
        return total / count
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait()
        shutil.rmtree(directory, ignore_errors=True)


def warm_up(port: int, count: int) -> None:
    """Open ``count`` connections at once, echo a message on each, close them."""
    import asyncio

    import portside

    async def one() -> None:
        async with portside.connect(
            f"ws://127.0.0.1:{port}/", open_timeout=600, close_timeout=600, compression=None
        ) as ws:
            await ws.send(b"x" * 256)
            await ws.recv()

    async def all_of_them() -> None:
        await asyncio.gather(*(one() for _ in range(count)))

    asyncio.run(all_of_them())


ROWS = ("echo", "handshakes", "workers", "storm", "instructions")
CONTENDERS = ("portside", "portside-again", "uvicorn", "granian")


def run_rounds(
    rounds: int,
    contenders: list[tuple[str, int]],
    measure: Callable[[Server], tuple[float, float]],
    log_dir: Path,
    results: dict[str, Samples],
    second: str,
) -> None:
    for index in range(rounds):
        order = contenders if index % 2 == 0 else list(reversed(contenders))
        for name, workers in order:
            key = f"{name} --workers {workers}"
            samples = results.setdefault(key, Samples())
            server = Server(name, workers, log_dir)
            try:
                server.wait_ready()
                value, other = measure(server)
            except Exception as exc:
                samples.errors.append(str(exc)[:300])
                print(f"  {key}: failed: {str(exc)[:300]}", file=sys.stderr)
                continue
            finally:
                server.stop()
            samples.values.append(value)
            if second == "cpu":
                samples.cpu_per_message_us.append(other)
            else:
                samples.failures += int(other)
            print(
                f"  round {index + 1} {key}: {value:,.2f} ({second} {other:.2f})", file=sys.stderr
            )


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, 1 s windows")
    parser.add_argument("--rounds", type=int, help="rounds per row (full: 3, quick: 1)")
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--storm-clients", type=int, default=5000)
    parser.add_argument("--only", help=f"comma-separated rows among {', '.join(ROWS)}")
    parser.add_argument("--servers", help=f"comma-separated among {', '.join(CONTENDERS)}")
    parser.add_argument("--json", type=Path, help="save the samples as JSON")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 4.0)
    rows = args.only.split(",") if args.only else list(ROWS)
    servers = args.servers.split(",") if args.servers else list(CONTENDERS)
    log_dir = Path(tempfile.mkdtemp(prefix="portside-appbench-"))
    launcher = Launcher(sys.executable, pin=False, log_dir=log_dir)
    report: dict[str, dict[str, Samples]] = {}
    try:
        # Each row: its title, the contenders (name, --workers), the measurement,
        # and what the measurement's second number is.
        plans: dict[
            str, tuple[str, list[tuple[str, int]], Callable[[Server], tuple[float, float]], str]
        ] = {
            "echo": (
                "echo: 256 B, 64 connections, --workers 2",
                [(name, 2) for name in servers],
                lambda server: measure_echo(launcher, server, warmup, duration),
                "cpu",
            ),
            "handshakes": (
                "handshakes: 50 at a time, --workers 2",
                [(name, 2) for name in servers],
                lambda server: measure_handshakes(launcher, server, warmup, duration),
                "failures",
            ),
            "workers": (
                "workers: portside's CPU per message, --workers 1 and 2",
                [("portside", 1), ("portside", 2), ("portside-again", 1), ("portside-again", 2)],
                lambda server: measure_echo(launcher, server, warmup, duration),
                "cpu",
            ),
            "storm": (
                f"storm: {args.storm_clients} clients at once, --workers 2",
                [("portside", 2), ("portside-again", 2)],
                lambda server: measure_storm(server, args.storm_clients),
                "failures",
            ),
        }
        for row, (title, contenders, measure, second) in plans.items():
            if row in rows:
                print(title, file=sys.stderr)
                report[row] = {}
                run_rounds(rounds, contenders, measure, log_dir, report[row], second)
        if "instructions" in rows:
            print("instructions: per message in the workers, under callgrind", file=sys.stderr)
            report["instructions"] = {}
            for workers in (1, 2):
                samples = report["instructions"].setdefault(
                    f"portside --workers {workers}", Samples()
                )
                try:
                    samples.values.append(measure_instructions(workers, max(duration, 3.0)))
                except Exception as exc:
                    samples.errors.append(str(exc)[:300])
                print(f"  --workers {workers}: {samples.values}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: the rows completed so far", file=sys.stderr)
    finally:
        stop_all()
    print_report(report, rounds, args.storm_clients)
    if args.json:
        args.json.write_text(
            json.dumps({row: {k: vars(v) for k, v in r.items()} for row, r in report.items()})
        )
    failed = any(s.errors for r in report.values() for s in r.values())
    return 1 if failed else 0


def print_acceptance(report: dict[str, dict[str, Samples]]) -> None:
    """portside ahead of uvicorn and granian, read against the control band."""
    lines = []
    for row in ("echo", "handshakes"):
        results = report.get(row, {})
        mine = results.get("portside --workers 2", Samples()).median()
        again = results.get("portside-again --workers 2", Samples()).median()
        if not mine or not again:
            continue
        # How far two equal servers came apart in this run, either way.
        band = max(again / mine, mine / again)
        for peer in ("uvicorn", "granian"):
            theirs = results.get(f"{peer} --workers 2", Samples()).median()
            if not theirs:
                continue
            ahead = mine / theirs
            verdict = (
                "ahead" if ahead > band else ("within the band" if ahead >= 1 / band else "behind")
            )
            lines.append(
                f"{row}: portside / {peer} = {ahead:.2f}x, control band {band:.2f}x: {verdict}"
            )
    if lines:
        print("\nacceptance (portside ahead of both, beyond the control band):")
        for line in lines:
            print(f"  {line}")


def print_report(report: dict[str, dict[str, Samples]], rounds: int, storm: int) -> None:
    print(f"\nmedians over {rounds} round(s); control: portside-again / portside\n")
    echo = report.get("echo", {})
    if echo:
        base = echo.get("portside --workers 2", Samples())
        print(
            "| echo 256 B x 64, --workers 2 | round trips/s | server CPU µs/message | "
            "portside / this (rate) |"
        )
        print("| --- | --- | --- | --- |")
        for key, samples in echo.items():
            rate, cpu = samples.median(), samples.cpu()
            print(f"| {key} | {rate or 0:,.0f} | {cpu or 0:.1f} | {ratio(base.median(), rate)} |")
    shakes = report.get("handshakes", {})
    if shakes:
        base = shakes.get("portside --workers 2", Samples())
        print(
            "\n| handshakes, 50 at a time, --workers 2 | per second | failures | portside / this |"
        )
        print("| --- | --- | --- | --- |")
        for key, samples in shakes.items():
            print(
                f"| {key} | {samples.median() or 0:,.0f} | {samples.failures} | "
                f"{ratio(base.median(), samples.median())} |"
            )
    workers = report.get("workers", {})
    if workers:
        print("\n| portside, echo 256 B x 64 | server CPU µs/message | round trips/s |")
        print("| --- | --- | --- |")
        for key, samples in workers.items():
            print(f"| {key} | {samples.cpu() or 0:.2f} | {samples.median() or 0:,.0f} |")
        for name in ("portside", "portside-again"):
            one = workers.get(f"{name} --workers 1", Samples()).cpu()
            two = workers.get(f"{name} --workers 2", Samples()).cpu()
            print(
                f"\n{name}: CPU per message, --workers 2 / --workers 1: {ratio(two, one)}"
                " (criterion: within 10 %)"
            )
    storm_rows = report.get("storm", {})
    if storm_rows:
        print(
            f"\n| {storm} clients at once, --workers 2 | seconds until all connected | failures |"
        )
        print("| --- | --- | --- |")
        for key, samples in storm_rows.items():
            print(f"| {key} | {samples.median() or 0:.2f} | {samples.failures} |")

    print_acceptance(report)
    counted = report.get("instructions", {})
    if counted:
        print("\n| portside, echo 256 B x 64, under callgrind | instructions per message |")
        print("| --- | --- |")
        for key, samples in counted.items():
            print(f"| {key} | {samples.median() or 0:,.0f} |")
        one = counted.get("portside --workers 1", Samples()).median()
        two = counted.get("portside --workers 2", Samples()).median()
        print(f"\n--workers 2 / --workers 1: {ratio(two, one)} (criterion: within 10 %)")
    errors = [(row, key, s.errors) for row, r in report.items() for key, s in r.items() if s.errors]
    for row, key, messages in errors:
        print(f"\n{row} {key}: {len(messages)} failed sample(s): {messages[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
