"""``python -m bench.sync``: portside's threading API against websockets', in one run.

Two kinds of rows, each at 256 B and 64 KiB, one connection in ping-pong:

- **server rows**: a threading echo server (``bench/servers/*_sync_echo.py``,
  ``for message in ws: ws.send(message)``) driven by picows' client on uvloop,
  the fastest client available, so that the server's share of a round trip is
  what differs;
- **client rows**: a threading client (``bench/clients/sync_pingpong.py``,
  ``ws.send(m); ws.recv()``) against picows' echo server on uvloop, the fastest
  server available, so that the client's share is what differs.

Contenders: portside.sync, websockets.sync, and **websockets.sync again**, the
control: a second websockets process (server rows) or run (client rows) in a
slot of its own, whose ratio to websockets.sync shows what the machine's noise
alone does to a ratio. Each round runs every contender once, forward in odd
rounds and backward in even ones; medians are taken over the rounds. The
criterion: portside.sync >= 1.5x websockets.sync on every row, read against the
control's band. Processes are pinned as in ``python -m bench`` (servers on CPU
1, clients on CPU 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench.cpu import CpuMeter
from bench.procs import (
    Launcher,
    ProcessFailed,
    ServerProcess,
    run_client,
    start_server,
    stop_all,
)
from bench.results import RowResult, Sample

__all__ = ["main"]

KiB = 1024
SIZES = (256, 64 * KiB)
TARGET = 1.5
CLIENT_TIMEOUT_MARGIN = 90.0


@dataclass(frozen=True)
class Contender:
    """One column: a library, in its own process (server rows) or run (client rows)."""

    key: str
    label: str
    library: str  # "portside" or "websockets"


CONTENDERS = (
    Contender("control", "websockets.sync again", "websockets"),
    Contender("portside", "portside.sync", "portside"),
    Contender("websockets", "websockets.sync", "websockets"),
)


@dataclass(frozen=True)
class Row:
    id: str
    kind: str  # "server" or "client"
    size: int

    @property
    def title(self) -> str:
        size = f"{self.size // KiB} KiB" if self.size >= KiB else f"{self.size} B"
        return f"{self.kind}, {size}, 1 connection"


def rows(kinds: Iterable[str]) -> list[Row]:
    return [
        Row(f"sync-{kind}-{size // KiB}KiB" if size >= KiB else f"sync-{kind}-{size}B", kind, size)
        for kind in kinds
        for size in SIZES
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync",
        description="Compare portside's threading API with websockets' (echo, one connection).",
    )
    parser.add_argument("--quick", action="store_true", help="one round, short windows")
    parser.add_argument("--rounds", type=int, help="rounds per row (default 5; --quick: 1)")
    parser.add_argument("--warmup", type=float, help="seconds of load before counting (1)")
    parser.add_argument("--duration", type=float, help="seconds counted (4)")
    parser.add_argument(
        "--kinds",
        default="server,client",
        help="comma-separated: server (threading servers), client (threading clients)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="save the samples as JSON")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="save the table as markdown")
    parser.add_argument("--log-dir", type=Path, help="keep the processes' logs here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes with taskset")
    args = parser.parse_args(argv)
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not args.kinds or set(args.kinds) - {"server", "client"}:
        parser.error("--kinds takes server, client or both")
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if quick else 1.0)
    args.duration = args.duration if args.duration is not None else (1.0 if quick else 4.0)
    if args.rounds < 1 or args.warmup < 0 or args.duration <= 0:
        parser.error("--rounds must be >= 1, --warmup >= 0 and --duration > 0")
    return args


class Runner:
    """Starts the servers a row needs, takes the samples, keeps the results."""

    def __init__(self, launcher: Launcher, args: argparse.Namespace) -> None:
        self.launcher = launcher
        self.args = args
        self.servers: dict[str, ServerProcess] = {}

    def server(self, name: str, module: str) -> ServerProcess:
        """A running server process named ``name`` (``bench.servers.<module>_echo``)."""
        server = self.servers.get(name)
        if server is not None and server.alive():
            return server
        if server is not None:
            server.stop()
        server = start_server(
            self.launcher, module, process=name, loop="uvloop", tls=None, compression=False
        )
        self.servers[name] = server
        server.wait_ready()
        return server

    def sample(self, row: Row, contender: Contender) -> Sample:
        args = self.args
        window = ["--warmup", str(args.warmup), "--duration", str(args.duration)]
        if row.kind == "server":
            # The contender serves; picows' client loads it.
            server = self.server(f"{contender.key}-sync", f"{contender.library}_sync")
            module = "bench.clients.picows_pingpong"
            client_args = ["--url", server.url, "--size", str(row.size), *window]
        else:
            # picows serves; the contender's threading client loads it.
            server = self.server("picows", "picows")
            module = "bench.clients.sync_pingpong"
            client_args = [
                "--library",
                contender.library,
                "--url",
                server.url,
                "--size",
                str(row.size),
                *window,
            ]
        meter = CpuMeter(server.pid)
        run = run_client(
            self.launcher,
            module,
            client_args,
            timeout=args.warmup + args.duration + CLIENT_TIMEOUT_MARGIN,
            on_window_start=meter.start,
            on_window_end=meter.end,
        )
        if not server.alive():
            return Sample(None, f"{server.name} server died; log {server.log}")
        if run.result is None:
            return Sample(None, run.error)
        details = {**run.result, **{f"cpu_{k}": v for k, v in meter.usage().items()}}
        rate = float(run.result["rate"])
        # The contender's CPU time (user + system) per round trip: what a busy
        # machine changes least, as it does not count waiting to be scheduled.
        side = details.get("cpu_server" if row.kind == "server" else "cpu_client")
        if isinstance(side, (int, float)) and rate > 0:
            details["cpu_us_per_round_trip"] = side / 100 / rate * 1e6
        return Sample(rate, details=details)

    def run_row(self, row: Row, progress: bool = True) -> RowResult:
        result = RowResult(
            id=row.id,
            kind=f"sync-{row.kind}",
            title=row.title,
            unit="round trips/s",
            higher_is_better=True,
            labels={c.key: c.label for c in CONTENDERS},
        )
        for round_number in range(1, self.args.rounds + 1):
            # Forward in odd rounds, backward in even ones: a steady drift of
            # the machine favours no contender.
            order = CONTENDERS if round_number % 2 else CONTENDERS[::-1]
            for contender in order:
                try:
                    sample = self.sample(row, contender)
                except ProcessFailed as exc:
                    sample = Sample(None, str(exc))
                result.add(contender.key, sample)
                if progress:
                    print(
                        f"  {row.id} round {round_number}/{self.args.rounds} "
                        f"{contender.label:<22} {describe(sample)}",
                        file=sys.stderr,
                        flush=True,
                    )
        return result

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def describe(sample: Sample) -> str:
    if sample.value is None:
        return f"FAILED: {(sample.error or 'failed').splitlines()[0]}"
    d = sample.details
    return (
        f"{sample.value:>10,.0f} round trips/s   cpu% server {d.get('cpu_server', '?')} "
        f"client {d.get('cpu_client', '?')} other {d.get('cpu_other', '?')}"
    )


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def table(results: list[RowResult]) -> list[str]:
    """Markdown lines: medians, the ratio to websockets.sync, the control's ratio."""
    lines = [
        "| row | portside.sync | websockets.sync | websockets.sync again "
        "| portside/websockets | control/websockets | CPU µs per round trip: portside, "
        "websockets (ratio) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:

        def median(key: str, result: RowResult = result) -> str:
            value = result.median(key)
            spread = result.spread(key)
            star = "*" if spread is not None and spread > 0.2 else ""
            return "n/a" if value is None else f"{value:,.0f}{star}"

        ours = result.median_detail("portside", "cpu_us_per_round_trip")
        theirs = result.median_detail("websockets", "cpu_us_per_round_trip")
        cpu = "n/a"
        if ours and theirs:
            cpu = f"{ours:.0f}, {theirs:.0f} ({theirs / ours:.2f}x less)"
        lines.append(
            f"| {result.title} | {median('portside')} | {median('websockets')} "
            f"| {median('control')} | {ratio_text(result.ratio('portside', 'websockets'))} "
            f"| {ratio_text(result.ratio('control', 'websockets'))} | {cpu} |"
        )
    return lines


def verdicts(results: list[RowResult]) -> tuple[list[str], bool]:
    lines = []
    passed = True
    for result in results:
        ratio = result.ratio("portside", "websockets")
        control = result.ratio("control", "websockets")
        ok = ratio is not None and ratio >= TARGET
        passed = passed and ok
        lines.append(
            f"{'PASS' if ok else 'FAIL'} {result.title}: portside.sync/websockets.sync "
            f"{ratio_text(ratio)} (>= {TARGET}x); control {ratio_text(control)}"
        )
    return lines, passed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_root = args.log_dir or Path(tempfile.mkdtemp(prefix="portside-bench-sync-"))
    log_root.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(sys.executable, pin=not args.no_pin, log_dir=log_root)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    runner = Runner(launcher, args)
    results: list[RowResult] = []
    status = 0
    pinned = "pinned: servers CPU 1, clients CPU 0" if launcher.pinned else "not pinned"
    print(
        f"bench.sync: {args.rounds} round(s), {args.warmup:g} s warm-up, "
        f"{args.duration:g} s windows, {pinned}; logs in {log_root}",
        file=sys.stderr,
    )
    try:
        for row in rows(args.kinds):
            results.append(runner.run_row(row))
    except KeyboardInterrupt:
        status = 130
    finally:
        runner.close()
        stop_all()
    lines = table(results)
    checks, passed = verdicts(results)
    print("\n".join(lines))
    print()
    print("\n".join(checks))
    print(
        "\n(* marks rows whose rounds differ by more than 20%; control: websockets.sync "
        "again / websockets.sync, the noise band; CPU: the contender process's user + "
        "system time per round trip, median over the rounds)"
    )
    errors = [error for result in results for error in result.errors()]
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text("\n".join([*lines, "", *checks]) + "\n")
    if status:
        return status
    if errors:
        return 1
    return 0 if passed else 2


if __name__ == "__main__":
    raise SystemExit(main())
