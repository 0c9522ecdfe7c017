"""``python -m bench``: the command line, the run, and its outputs."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.acceptance import evaluate, evaluate_control
from bench.context import Context
from bench.plan import CONTENDERS, MemoryRow, Row, build_plan
from bench.procs import Launcher, stop_all
from bench.report import acceptance_lines, build_tables, render_markdown, render_text
from bench.results import RowResult
from bench.runtime import LOOPS
from bench.settings import FULL, QUICK, Settings
from bench.tlscert import make_self_signed

__all__ = ["main"]

REQUIRED = ("portside", "websockets", "aiohttp", "picows", "uvloop", "psutil")
VERSIONED = ("portside", "websockets", "aiohttp", "picows", "aiofastnet", "uvloop", "psutil")


def csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Compare portside's echo server with websockets, aiohttp and picows.",
    )
    parser.add_argument("--quick", action="store_true", help="a one-minute subset")
    parser.add_argument("--rounds", type=int, help="rounds of the server rotation per row")
    parser.add_argument("--warmup", type=float, help="echo rows: seconds of load before counting")
    parser.add_argument("--duration", type=float, help="echo rows: seconds counted")
    parser.add_argument("--handshake-duration", type=float, help="handshake rows: seconds counted")
    parser.add_argument("--memory-connections", type=int, help="idle connections per server")
    parser.add_argument("--memory-clients", type=int, help="client processes opening them")
    parser.add_argument(
        "--only", type=csv, help="comma-separated row ids, globs or prefixes (see --list)"
    )
    parser.add_argument(
        "--servers", type=csv, help=f"comma-separated subset of: {', '.join(CONTENDERS)}"
    )
    parser.add_argument("--loops", type=csv, help="server event loops: uvloop,asyncio")
    parser.add_argument("--json", type=Path, metavar="PATH", help="save raw results as JSON")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="save the tables as markdown")
    parser.add_argument("--log-dir", type=Path, help="keep server and client logs here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes with taskset")
    parser.add_argument(
        "--list", action="store_true", help="list the rows that would run, and exit"
    )
    args = parser.parse_args(argv)
    if args.servers:
        unknown = set(args.servers) - set(CONTENDERS)
        if unknown:
            parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.loops:
        unknown = set(args.loops) - set(LOOPS)
        if unknown:
            parser.error(f"unknown loops: {', '.join(sorted(unknown))}")
    for name in ("rounds", "memory_connections", "memory_clients"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    return base.with_overrides(
        rounds=args.rounds,
        warmup=args.warmup,
        duration=args.duration,
        handshake_duration=args.handshake_duration,
        memory_connections=args.memory_connections,
        memory_clients=args.memory_clients,
        only=args.only,
        servers=args.servers,
        loops=args.loops,
        handshake_loops=args.loops,
        pin=False if args.no_pin else None,
    )


def missing_packages() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def portside_source() -> dict[str, Any]:
    """Where portside is imported from and, if it is a git checkout, which commit."""
    spec = importlib.util.find_spec("portside")
    origin = spec.origin if spec is not None and spec.origin else None
    info: dict[str, Any] = {"path": str(Path(origin).parent) if origin else None}
    if origin is None or shutil.which("git") is None:
        return info
    root = Path(origin).parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    info["commit"] = git("rev-parse", "--short", "HEAD") or None
    if info["commit"]:
        info["modified"] = bool(git("status", "--porcelain", "--", "portside"))
    return info


def machine_info(pinned: bool) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "pinned": pinned,
        "load_average": os.getloadavg(),
        "versions": {name: version(name) for name in VERSIONED},
        "portside_source": portside_source(),
    }


def execute(plan: list[Row], context: Context, results: list[RowResult]) -> None:
    """Run the plan, appending to ``results`` so that an interrupted run keeps its rows."""
    # Imported here: they need psutil, whose absence main() reports politely.
    from bench.memory import run_memory_row
    from bench.runner import Servers, run_throughput_row

    servers: Servers | None = None
    try:
        for index, row in enumerate(plan, 1):
            context.progress(f"[{index}/{len(plan)}] {row.id}: {row.title}")
            if isinstance(row, MemoryRow):
                if servers is not None:
                    servers.close()
                    servers = None
                run_memory_row(row, context, results)
                continue
            if servers is None or servers.config != row.config:
                if servers is not None:
                    servers.close()
                servers = Servers(context, row.config)
            run_throughput_row(row, servers, results)
    finally:
        if servers is not None:
            servers.close()


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


CONTROL_HEADING = "Control: the picows criterion between two picows servers (not counted)"


def write_markdown(
    path: Path,
    info: dict[str, Any],
    text_blocks: list[str],
    checks: list[str],
    control: list[str],
) -> None:
    versions = ", ".join(f"{name} {ver}" for name, ver in info["versions"].items())
    source = info["portside_source"]
    if source.get("commit"):
        modified = " with uncommitted changes" if source.get("modified") else ""
        versions += f" (portside at commit {source['commit']}{modified})"
    lines = [
        "## Benchmark results",
        "",
        f"{info['date']}, {info['cpu']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"{'server on CPU 1, client on CPU 0' if info['pinned'] else 'not pinned'}. "
        f"Run: `{info['command']}` ({info['duration_s'] / 60:.1f} min).",
        "",
        f"Versions: {versions}.",
        "",
        *(block + "\n" for block in text_blocks),
        "### Acceptance",
        "",
        "```",
        *checks,
        "```",
        "",
    ]
    if control:
        lines += [f"### {CONTROL_HEADING}", "", "```", *control, "```", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    plan = build_plan(settings)
    if args.list:
        for row in plan:
            print(f"{row.id:<28} {row.title}")
        return 0
    if not plan:
        print("no rows match --only", file=sys.stderr)
        return 2
    missing = missing_packages()
    if missing:
        print(
            f"missing: {', '.join(missing)}; install them with: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2

    # A fresh directory per run, inside --log-dir if given, so runs never mix logs.
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix=time.strftime("bench-%Y%m%d-%H%M%S-"), dir=args.log_dir))
    launcher = Launcher(settings.python, settings.pin, log_dir)
    needs_tls = any(getattr(row, "tls", False) for row in plan)
    context = Context(settings, launcher, make_self_signed(log_dir) if needs_tls else None)
    info = machine_info(launcher.pinned)
    info["command"] = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    if not launcher.pinned:
        context.progress("note: not pinning processes (no taskset, fewer than 2 CPUs, or --no-pin)")
    source = info["portside_source"]
    context.progress(
        f"portside from {source['path']}"
        + (
            f" (commit {source['commit']}{', modified' if source.get('modified') else ''})"
            if source.get("commit")
            else ""
        )
    )
    context.progress(f"{len(plan)} rows, {settings.rounds} round(s) each; logs in {log_dir}")

    # Explicit for SIGINT too: a shell starting the harness in the background ignores it.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    results: list[RowResult] = []
    interrupted = False
    started = time.monotonic()
    try:
        execute(plan, context, results)
    except KeyboardInterrupt:
        interrupted = True
        context.progress("interrupted: reporting the rows completed so far")
    finally:
        stop_all()
    info["duration_s"] = round(time.monotonic() - started, 1)
    info["load_average_end"] = os.getloadavg()

    tables = build_tables(
        results, pinned=launcher.pinned, handshake_concurrency=settings.handshake_concurrency
    )
    checks = evaluate(results)
    check_lines = acceptance_lines(checks)
    control = evaluate_control(results)
    control_lines = acceptance_lines(control) if control else []
    print()
    for table in tables:
        print(render_text(table))
        print()
    print("Acceptance")
    print("\n".join(check_lines))
    if control_lines:
        print(f"\n{CONTROL_HEADING}")
        print("\n".join(control_lines))
    errors = [error for result in results for error in result.errors()]
    if errors:
        print(f"\n{len(errors)} sample(s) failed:")
        for error in errors:
            print(f"  {error}")
    warnings = [warning for result in results for warning in result.warnings()]
    if warnings:
        print(f"\n{len(warnings)} sample(s) with failed attempts:")
        for warning in warnings:
            print(f"  {warning}")
    if context.log_notes:
        print("\nServer logs with errors:")
        for note in context.log_notes:
            print(f"  {note.summary()}")
    print(f"\nDuration: {info['duration_s'] / 60:.1f} min ({info['duration_s']:.0f} s)")

    if args.json:
        payload = {
            "machine": info,
            "settings": dataclasses.asdict(settings),
            "results": [result.to_json() for result in results],
            "acceptance": [dataclasses.asdict(check) for check in checks],
            "control": [dataclasses.asdict(check) for check in control],
            "log_notes": [
                {**dataclasses.asdict(n), "path": str(n.path)} for n in context.log_notes
            ],
            "interrupted": interrupted,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    if args.markdown:
        write_markdown(
            args.markdown, info, [render_markdown(t) for t in tables], check_lines, control_lines
        )
    if args.log_dir is None and not context.log_notes and not errors:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        print(f"Logs: {log_dir}")
    return 130 if interrupted else 1 if errors else 0
