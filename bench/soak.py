"""Soak: 10,000 connections on one worker for 10 minutes, every message checked.

Run: ``python -m bench.soak [--connections 10000] [--duration 600] [--loop uvloop]
[--clients 4] [--out docs/soak]``.

The server (``python -m bench.soak server``) is one portside process, one event
loop, echoing. The clients are ``--clients`` other processes
(``python -m bench.soak client``), which share the connections: each connection
sends a numbered 100-byte text message once a second and checks that the echo
is that very message, in order: a message lost, duplicated, reordered or
altered counts as lost, a connection closed before the end counts as dropped.

The file-descriptor limit is raised to its hard limit in every process (and
printed): 10,000 connections need 10,000 descriptors in the server. The
server's RSS is read every 30 s from /proc. After a warm-up (the connections
are all open, and a minute has passed), RSS must stay flat: the last sample at
most 5 % above the first sample after the warm-up. The run writes the table to
stdout and ``<out>.json``, and the curve to ``<out>.png`` (matplotlib, from the
bench extra).

Exit status 0 when nothing was lost or dropped and RSS stayed flat.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import portside

SAMPLE_EVERY = 30.0
WARMUP = 60.0
MESSAGE_SIZE = 100


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_memory(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM and VmSize of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "VmSize"):
            fields[name] = int(value.split()[0])
    return fields


def run_loop(main: Any, loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


# The server.


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def serve(options: argparse.Namespace) -> None:
    """Serve until stdin closes; answer ``stats`` on stdin with a JSON line."""
    portside.tune_allocator()
    loop = asyncio.get_running_loop()
    async with portside.serve(
        echo,
        "127.0.0.1",
        0,
        backlog=4096,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_interval,
        close_timeout=options.close_timeout,
        open_timeout=options.close_timeout,
    ) as server:
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            if command == "trim":
                # glibc keeps freed memory for reuse (tune_allocator raises how
                # much): hand it back, to see what is still in use.
                import ctypes

                gc.collect()
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            if command in ("stats", "trim"):
                stats = {"connections": len(server.connections), **process_memory()}
                print(json.dumps(stats), flush=True)


# The clients.


@dataclass
class Counters:
    opened: int = 0
    sent: int = 0
    received: int = 0
    lost: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


async def one_connection(
    url: str, number: int, start: float, stop: float, counters: Counters, period: float
) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with portside.connect(url, open_timeout=60) as ws:
            counters.opened += 1
            sequence = 0
            # Spread the connections over the period, so that the load is even.
            offset = (number * 0.6180339887 % 1.0) * period
            while True:
                due = start + offset + sequence * period
                # At the end, stop: a client behind its schedule (a loaded
                # machine) does not make up for it after the window.
                if due >= stop or loop.time() >= stop:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                message = f"{number:06d} {sequence:09d} ".ljust(MESSAGE_SIZE, "x")
                await ws.send(message)
                counters.sent += 1
                reply = await ws.recv()
                if reply != message:
                    counters.lost += 1
                    if len(counters.errors) < 10:
                        counters.errors.append(f"{number}: expected {message!r}, got {reply!r}")
                else:
                    counters.received += 1
                sequence += 1
    except Exception as exc:
        counters.dropped += 1
        if len(counters.errors) < 10:
            counters.errors.append(f"{number}: {type(exc).__name__}: {exc}")


async def clients(options: argparse.Namespace) -> None:
    """Open this process's share of the connections; report counters on stdout."""
    loop = asyncio.get_running_loop()
    counters = Counters()
    start = loop.time() + options.ramp
    stop = start + options.seconds
    tasks = []
    for number in range(options.first, options.first + options.count):
        tasks.append(
            asyncio.create_task(
                one_connection(options.url, number, start, stop, counters, options.period)
            )
        )
        if len(tasks) % 100 == 0:
            await asyncio.sleep(options.ramp / max(1, options.count / 100) / 2)

    async def report() -> None:
        while True:
            print(json.dumps(vars(counters) | {"final": False}), flush=True)
            await asyncio.sleep(5)

    reporting = asyncio.create_task(report())
    await asyncio.gather(*tasks)
    reporting.cancel()
    print(json.dumps(vars(counters) | {"final": True}), flush=True)


# The run.


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.soak", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


class Server:
    """The server process, asked for its stats through stdin."""

    def __init__(self, loop: str, ping_interval: float | None, close_timeout: float) -> None:
        args = ["server", "--loop", loop, "--close-timeout", str(close_timeout)]
        if ping_interval is not None:
            args += ["--ping-interval", str(ping_interval)]
        self.process = spawn(*args)
        assert self.process.stdout is not None
        self.port = json.loads(self.process.stdout.readline())["port"]

    def _ask(self, command: str) -> dict[str, int]:
        """Send ``command`` on the server's stdin; return the stats it answers with."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{command}\n")
        stats: dict[str, int] = json.loads(self.process.stdout.readline())
        return stats

    def stats(self) -> dict[str, int]:
        return self._ask("stats")

    def stats_trimmed(self) -> dict[str, int]:
        """The stats after a garbage collection and malloc_trim(0)."""
        return self._ask("trim")

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def read_counters(process: subprocess.Popen[str], latest: dict[str, Any]) -> None:
    """Read the client's JSON lines that are there (non-blocking)."""
    import select

    assert process.stdout is not None
    while select.select([process.stdout], [], [], 0)[0]:
        line = process.stdout.readline()
        if not line:
            return
        latest.update(json.loads(line))


def commit() -> str:
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def plot(samples: list[dict[str, float]], path: Path, title: str, warmup: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t"] / 60 for s in samples]
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(minutes, [s["rss_mib"] for s in samples], marker="o", label="server RSS")
    axis.axvline(warmup / 60, color="grey", linestyle=":", label="end of warm-up")
    axis.set_xlabel("minutes")
    axis.set_ylabel("MiB")
    axis.set_ylim(bottom=0)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def run(options: argparse.Namespace) -> int:
    limit = raise_fd_limit()
    print(f"open files limit: {limit} (this process and its children)", flush=True)
    if limit < options.connections + 64:
        print(f"the limit is below {options.connections} connections: raise it (ulimit -Hn)")
        return 2
    server = Server(options.loop, 20.0, 10.0)
    share = -(-options.connections // options.clients)
    url = f"ws://127.0.0.1:{server.port}/"
    ramp = 20.0
    processes = []
    for index in range(options.clients):
        first = index * share
        count = min(share, options.connections - first)
        processes.append(
            spawn(
                "client",
                "--url",
                url,
                "--first",
                str(first),
                "--count",
                str(count),
                "--seconds",
                str(options.duration),
                "--ramp",
                str(ramp),
                "--loop",
                options.loop,
            )
        )
    started = time.monotonic()
    latest: list[dict[str, Any]] = [{} for _ in processes]
    samples: list[dict[str, float]] = []
    end = started + ramp + options.duration
    next_sample = started
    while time.monotonic() < end + 5 or any(p.poll() is None for p in processes):
        for process, counters in zip(processes, latest, strict=True):
            read_counters(process, counters)
        now = time.monotonic()
        if now >= next_sample and now < end:
            stats = server.stats()
            sample = {
                "t": round(now - started, 1),
                "rss_mib": round(stats["VmRSS"] / 1024, 1),
                "connections": stats["connections"],
                "sent": sum(c.get("sent", 0) for c in latest),
                "received": sum(c.get("received", 0) for c in latest),
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            next_sample += options.sample_every
        if time.monotonic() > end + 120:
            print("clients did not finish within 2 minutes of the end")
            break
        time.sleep(0.5)
    for process, counters in zip(processes, latest, strict=True):
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        read_counters(process, counters)
    server_stats = server.stats()
    server.stop()

    totals = {
        key: sum(c.get(key, 0) for c in latest)
        for key in ("opened", "sent", "received", "lost", "dropped")
    }
    errors = [error for c in latest for error in c.get("errors", [])]
    after_warmup = [s for s in samples if s["t"] >= options.warmup]
    growth = (
        (after_warmup[-1]["rss_mib"] - after_warmup[0]["rss_mib"]) / after_warmup[0]["rss_mib"]
        if len(after_warmup) >= 2
        else float("nan")
    )
    expected = options.connections * int(options.duration)
    result = {
        "connections": options.connections,
        "duration_s": options.duration,
        "loop": options.loop,
        "client_processes": options.clients,
        "open_files_limit": limit,
        "python": sys.version.split()[0],
        "totals": totals,
        "messages_expected_about": expected,
        "rss_growth_after_warmup": growth,
        "warmup_s": options.warmup,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "server_peak_rss_mib": round(server_stats["VmHWM"] / 1024, 1),
        "samples": samples,
        "errors": errors[:20],
    }
    print("\n| minute | server RSS (MiB) | connections | messages echoed |")
    print("|---:|---:|---:|---:|")
    for s in samples:
        print(
            f"| {s['t'] / 60:.1f} | {s['rss_mib']:.1f} | {s['connections']:,} | {s['received']:,} |"
        )
    print(f"\ntotals: {totals}")
    print(f"RSS growth after warm-up: {growth * 100:+.2f} %")
    for error in errors[:10]:
        print("error:", error)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    title = f"portside soak: {options.connections:,} connections, {options.loop}"
    plot(samples, out.with_suffix(".png"), title, options.warmup)
    ok = (
        totals["lost"] == 0
        and totals["dropped"] == 0
        and totals["opened"] == options.connections
        and growth < 0.05
    )
    print("soak: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("server")
    server.add_argument("--loop", default="asyncio")
    server.add_argument("--ping-interval", type=float, default=None)
    server.add_argument("--close-timeout", type=float, default=10.0)
    client = sub.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--first", type=int, required=True)
    client.add_argument("--count", type=int, required=True)
    client.add_argument("--seconds", type=float, required=True)
    client.add_argument("--ramp", type=float, default=20.0)
    client.add_argument("--period", type=float, default=1.0)
    client.add_argument("--loop", default="asyncio")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of messages")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--out", default="docs/soak", help="path of the .json and .png, no suffix")
    parser.add_argument("--warmup", type=float, default=WARMUP, help="seconds before RSS is flat")
    parser.add_argument("--sample-every", type=float, default=SAMPLE_EVERY, help="seconds")
    options = parser.parse_args(argv)
    if options.command == "server":
        raise_fd_limit()
        run_loop(serve(options), options.loop)
        return 0
    if options.command == "client":
        raise_fd_limit()
        run_loop(clients(options), options.loop)
        return 0
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
