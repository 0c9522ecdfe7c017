"""Running the throughput rows: servers in rotation, several rounds, one client per sample."""

from __future__ import annotations

from collections.abc import Iterable

from bench.context import Context
from bench.cpu import CpuMeter
from bench.plan import Contender, EchoRow, HandshakeRow, ServerConfig, contenders_for
from bench.procs import ProcessFailed, ServerProcess, run_client, start_server, tail
from bench.results import RowResult, Sample
from bench.settings import Settings

__all__ = ["Servers", "run_throughput_row"]

CLIENT_TIMEOUT_MARGIN = 90.0


class Servers:
    """The server processes for one configuration: started together, restarted if they die."""

    def __init__(self, context: Context, config: ServerConfig) -> None:
        self.context = context
        self.config = config
        self.running: dict[str, ServerProcess] = {}

    def ensure(self, contenders: Iterable[Contender]) -> None:
        """Start the process of every contender not running yet, in parallel; wait until ready."""
        started = []
        for contender in contenders:
            name = contender.process
            if name in self.running and self.running[name].alive():
                continue
            if name in self.running:
                self.retire(name)
            if self.config.tls and self.context.cert is None:
                raise ProcessFailed("no certificate for the TLS row")
            server = start_server(
                self.context.launcher,
                contender.server,
                process=name,
                loop=self.config.loop,
                tls=self.context.cert if self.config.tls else None,
                compression=self.config.compression,
            )
            self.running[name] = server
            started.append(server)
        failures = []
        for server in started:
            try:
                server.wait_ready()
            except ProcessFailed as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def get(self, contender: Contender) -> ServerProcess:
        self.ensure([contender])
        return self.running[contender.process]

    def retire(self, name: str) -> None:
        server = self.running.pop(name)
        server.stop()
        self.context.note_log(server)

    def close(self) -> None:
        for name in list(self.running):
            self.retire(name)


def echo_client(
    row: EchoRow, contender: Contender, url: str, settings: Settings
) -> tuple[str, list[str]]:
    """The client module and arguments for one echo sample."""
    args = [
        "--url",
        url,
        "--size",
        str(row.size),
        "--connections",
        str(row.connections),
        "--warmup",
        str(settings.warmup),
        "--duration",
        str(settings.duration),
    ]
    deflate = ["--payload", "json", "--compression"] if row.deflate else []
    if contender.own_client:
        return "bench.clients.async_pingpong", ["--library", "portside", *args, *deflate]
    if row.deflate:
        # picows' client cannot negotiate permessage-deflate; websockets' client drives all.
        return "bench.clients.async_pingpong", ["--library", "websockets", *args, *deflate]
    return "bench.clients.picows_pingpong", args


def handshake_client(row: HandshakeRow, server: ServerProcess, settings: Settings) -> list[str]:
    args = [
        "--port",
        str(server.port),
        "--concurrency",
        str(settings.handshake_concurrency),
        "--warmup",
        str(settings.handshake_warmup),
        "--duration",
        str(settings.handshake_duration),
    ]
    return [*args, "--compression"] if row.compression else args


def take_sample(
    context: Context, server: ServerProcess, module: str, args: list[str], timeout: float
) -> Sample:
    meter = CpuMeter(server.pid)
    run = run_client(
        context.launcher,
        module,
        args,
        timeout=timeout,
        on_window_start=meter.start,
        on_window_end=meter.end,
    )
    if not server.alive():
        return Sample(
            None,
            f"{server.name} server died (exit status {server.popen.returncode}); "
            f"log {server.log}:\n{tail(server.log) or '(empty)'}",
        )
    if run.result is None:
        return Sample(None, run.error)
    details = {**run.result, **{f"cpu_{key}": value for key, value in meter.usage().items()}}
    return Sample(float(run.result["rate"]), details=details)


def describe(sample: Sample, unit: str) -> str:
    if sample.value is None:
        first_line = (sample.error or "failed").splitlines()[0]
        return f"FAILED: {first_line}"
    details = sample.details
    text = (
        f"{sample.value:>12,.0f} {unit}   cpu% server {details.get('cpu_server', '?')}"
        f" client {details.get('cpu_client', '?')} other {details.get('cpu_other', '?')}"
    )
    if details.get("failures"):
        text += f"   {details['failures']} failed, first: {details.get('first_error')}"
    return text


def run_throughput_row(
    row: EchoRow | HandshakeRow, servers: Servers, results: list[RowResult]
) -> None:
    """Run an echo or handshake row: every round runs every contender once, in turn.

    The row's result is appended to ``results`` first and filled as samples come.
    """
    context = servers.context
    settings = context.settings
    contenders = contenders_for(row, settings)
    if isinstance(row, EchoRow):
        unit = "round trips/s"
        timeout = settings.warmup + settings.duration + CLIENT_TIMEOUT_MARGIN
    else:
        unit = "handshakes/s"
        timeout = settings.handshake_warmup + settings.handshake_duration + CLIENT_TIMEOUT_MARGIN
    result = RowResult(
        id=row.id,
        kind=row.kind,
        title=row.title,
        unit=unit,
        higher_is_better=True,
        labels={c.key: c.label for c in contenders},
    )
    results.append(result)
    try:
        # One process per server (and per replica), however many contenders use it.
        servers.ensure({c.process: c for c in contenders}.values())
    except ProcessFailed as exc:
        context.progress(f"  {exc}")
    for round_number in range(1, settings.rounds + 1):
        # Forward in odd rounds, backward in even ones: over two rounds every
        # contender's mean position is the same, so a steady drift of the
        # machine favours none of them.
        order = contenders if round_number % 2 else contenders[::-1]
        for contender in order:
            try:
                server = servers.get(contender)
            except ProcessFailed as exc:
                sample = Sample(None, str(exc))
            else:
                if isinstance(row, EchoRow):
                    module, args = echo_client(row, contender, server.url, settings)
                else:
                    module, args = (
                        "bench.clients.handshakes",
                        handshake_client(row, server, settings),
                    )
                sample = take_sample(context, server, module, args, timeout)
            result.add(contender.key, sample)
            context.progress(
                f"  {row.id} round {round_number}/{settings.rounds} "
                f"{contender.label:<20} {describe(sample, unit)}"
            )
