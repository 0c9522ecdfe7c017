"""Server RSS per idle connection.

For each sample a fresh server process is started; idle clients (see
:mod:`bench.clients.idle`) warm it up, then open N connections and later send one
message on each. The server's RSS is read before, after the handshakes, and after
the messages; the established connections are counted on the server's side first.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from bench.context import Context
from bench.plan import MemoryRow, contenders_for
from bench.procs import (
    CLIENT_CPU,
    LineReader,
    ProcessFailed,
    ServerProcess,
    start_server,
    stop_process,
    tail,
)
from bench.results import RowResult, Sample

__all__ = ["run_memory_row"]

STEP_TIMEOUT = 180.0
SETTLE_INTERVAL = 0.1
SETTLE_TIMEOUT = 5.0
# RSS is settled when three readings in a row are this close.
SETTLE_TOLERANCE = 32 * 1024


def settled_rss(pid: int) -> int:
    """The process's RSS once it stops moving (or after :data:`SETTLE_TIMEOUT`)."""
    process = psutil.Process(pid)
    readings = [int(process.memory_info().rss)]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL)
        readings.append(int(process.memory_info().rss))
        last = readings[-3:]
        if len(last) == 3 and max(last) - min(last) <= SETTLE_TOLERANCE:
            break
    return readings[-1]


def established(server: ServerProcess) -> int:
    """How many TCP connections the server process has established on its port."""
    connections = psutil.Process(server.pid).net_connections(kind="tcp")
    return sum(
        1
        for conn in connections
        if conn.status == psutil.CONN_ESTABLISHED and conn.laddr and conn.laddr.port == server.port
    )


def wait_established(server: ServerProcess, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    count = established(server)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = established(server)
    return count


class IdleClients:
    """The idle client processes of one sample, driven in lockstep."""

    def __init__(self, context: Context, server: ServerProcess, row: MemoryRow) -> None:
        settings = context.settings
        count = max(1, min(settings.memory_clients, row.connections))
        shares = [row.connections // count + (i < row.connections % count) for i in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.readers: list[LineReader] = []
        self.logs: list[Path] = []
        for index, share in enumerate(shares):
            args = ["--port", str(server.port), "--connections", str(share)]
            if index == 0:
                args += ["--warmup-connections", str(settings.memory_warmup_connections)]
            if row.compression:
                args.append("--compression")
            log = context.launcher.log_path("client-idle")
            process = context.launcher.spawn(
                "bench.clients.idle",
                args,
                cpu=CLIENT_CPU,
                log=log,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            self.processes.append(process)
            self.readers.append(LineReader(process.stdout))
            self.logs.append(log)

    def step(self, command: str | None, answer: str) -> list[dict[str, Any]]:
        """Send ``command`` to every client (if any); collect each one's ``answer``."""
        if command is not None:
            for process in self.processes:
                assert process.stdin is not None
                process.stdin.write(command.encode() + b"\n")
                process.stdin.flush()
        replies = []
        for process, reader, log in zip(self.processes, self.readers, self.logs, strict=True):
            try:
                reply = reader.read_json(STEP_TIMEOUT)
            except TimeoutError:
                reply = None
            if reply is None or reply.get("event") != answer:
                raise ProcessFailed(
                    f"idle client did not answer {answer!r} (status {process.poll()}, "
                    f"got {reply}): {tail(log, 5)}"
                )
            replies.append(reply)
        return replies

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process, grace=1.0)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def check_all_ok(replies: list[dict[str, Any]], expected: int, what: str) -> None:
    ok = sum(int(reply["ok"]) for reply in replies)
    if ok != expected:
        errors = [reply.get("first_error") for reply in replies if reply.get("first_error")]
        raise ProcessFailed(f"{what}: {ok} of {expected} succeeded; first error: {errors[:1]}")


def measure(context: Context, row: MemoryRow, name: str) -> tuple[Sample, Sample]:
    """One sample: KiB per connection right after the handshakes, and after one message."""
    server = start_server(
        context.launcher, name, loop=row.config.loop, tls=None, compression=row.compression
    )
    clients: IdleClients | None = None
    try:
        server.wait_ready()
        clients = IdleClients(context, server, row)
        clients.step(None, "ready")
        baseline = settled_rss(server.pid)
        check_all_ok(clients.step("open", "opened"), row.connections, "opening handshakes")
        count = wait_established(server, row.connections)
        if count < row.connections:
            raise ProcessFailed(f"only {count} of {row.connections} connections established")
        after_open = settled_rss(server.pid)
        check_all_ok(clients.step("message", "messaged"), row.connections, "echoes")
        after_message = settled_rss(server.pid)
        details = {"baseline_rss": baseline, "established": count}
        return (
            Sample(
                (after_open - baseline) / row.connections / 1024,
                details={**details, "rss": after_open},
            ),
            Sample(
                (after_message - baseline) / row.connections / 1024,
                details={**details, "rss": after_message},
            ),
        )
    except (ProcessFailed, psutil.Error, OSError) as exc:
        if not server.alive():
            exc = ProcessFailed(f"{name} server died (status {server.popen.returncode}): {exc}")
        failed = Sample(None, f"{type(exc).__name__}: {exc}")
        return failed, failed
    finally:
        # The server goes first, so that it logs nothing about clients going away.
        server.stop()
        if clients is not None:
            clients.stop()
        context.note_log(server)


def run_memory_row(row: MemoryRow, context: Context, results: list[RowResult]) -> None:
    """Both memory figures for every contender, servers in rotation, several rounds.

    The two results are appended to ``results`` first and filled as samples come.
    """
    settings = context.settings
    contenders = contenders_for(row, settings)
    labels = {c.key: c.label for c in contenders}
    phases = [
        RowResult(f"{row.id}:{phase}", "memory", f"{row.title}, {title}", "KiB/conn", False, labels)
        for phase, title in (("handshake", "after handshake"), ("message", "after one message"))
    ]
    results.extend(phases)
    for round_number in range(1, settings.rounds + 1):
        for contender in contenders:
            samples = measure(context, row, contender.server)
            for phase, sample in zip(phases, samples, strict=True):
                phase.add(contender.key, sample)
            values = ", ".join(
                "FAILED" if s.value is None else f"{s.value:.1f} KiB/conn" for s in samples
            )
            context.progress(
                f"  {row.id} round {round_number}/{settings.rounds} {contender.label:<20} "
                f"{values}" + (f"  ({samples[0].error})" if samples[0].error else "")
            )
