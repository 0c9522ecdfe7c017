"""CPU accounting for a measuring window: who used the two cores.

A row is only meaningful if the server was the bottleneck. Sampling the server's
and the client's CPU times, and both cores' busy times, at the start and end of
each client's window tells whether the server was saturated, whether the client
was, and how much else ran on the machine meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from bench.procs import CLIENT_CPU, SERVER_CPU

__all__ = ["CpuMeter"]


@dataclass(frozen=True)
class Snapshot:
    wall: float
    server: float
    client: float
    busy: tuple[float, ...]
    steal: float


def process_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def take(server_pid: int, client_pid: int) -> Snapshot:
    cores = psutil.cpu_times(percpu=True)
    busy = tuple(
        float(sum(core) - core.idle - getattr(core, "iowait", 0.0) - getattr(core, "steal", 0.0))
        for core in cores
    )
    steal = float(sum(getattr(core, "steal", 0.0) for core in cores))
    return Snapshot(
        time.perf_counter(), process_seconds(server_pid), process_seconds(client_pid), busy, steal
    )


class CpuMeter:
    """Samples at a client's window start and end; :meth:`usage` gives percentages."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.first: Snapshot | None = None
        self.last: Snapshot | None = None

    def start(self, client_pid: int) -> None:
        self.first = take(self.server_pid, client_pid)

    def end(self, client_pid: int) -> None:
        self.last = take(self.server_pid, client_pid)

    def usage(self) -> dict[str, float]:
        """Percent of one core over the window.

        ``server`` and ``client``: the two processes. ``other``: everything else on
        both cores (other processes, kernel work not charged to either). ``steal``:
        time the hypervisor gave to other guests.
        """
        first, last = self.first, self.last
        if first is None or last is None or last.wall <= first.wall:
            return {}
        wall = last.wall - first.wall

        def percent(seconds: float) -> float:
            return round(100.0 * seconds / wall, 1)

        server = last.server - first.server
        client = last.client - first.client
        busy = [b - a for a, b in zip(first.busy, last.busy, strict=True)]
        usage = {
            "server": percent(server),
            "client": percent(client),
            "other": percent(max(sum(busy) - server - client, 0.0)),
            "steal": percent(last.steal - first.steal),
        }
        for name, cpu in (("server_core", SERVER_CPU), ("client_core", CLIENT_CPU)):
            if cpu < len(busy):
                usage[name] = percent(busy[cpu])
        return usage
