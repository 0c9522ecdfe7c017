"""How much to measure: the full run, the ``--quick`` subset, and command-line overrides."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["FULL", "QUICK", "Settings"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a run; the plan and the runners read it."""

    rounds: int
    # Ping-pong rows: seconds of load before counting, then seconds counted.
    warmup: float
    duration: float
    sizes: tuple[int, ...]
    connections: tuple[int, ...]
    loops: tuple[str, ...]
    tls_row: bool
    deflate_row: bool
    # Connection churn.
    handshake_loops: tuple[str, ...]
    handshake_compression: tuple[bool, ...]
    handshake_warmup: float
    handshake_duration: float
    handshake_concurrency: int
    # Idle connections.
    memory_connections: int
    memory_clients: int
    memory_warmup_connections: int
    # Filters: contender keys and row patterns (empty: everything).
    servers: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    pin: bool = True
    python: str = sys.executable
    quick: bool = False

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the options given on the command line (``None`` means unchanged)."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


FULL = Settings(
    rounds=3,
    warmup=1.0,
    duration=4.0,
    sizes=(256, 8 * KiB, 64 * KiB, MiB),
    connections=(1, 64),
    loops=("uvloop", "asyncio"),
    tls_row=True,
    deflate_row=True,
    handshake_loops=("uvloop", "asyncio"),
    handshake_compression=(False, True),
    handshake_warmup=1.0,
    handshake_duration=4.0,
    handshake_concurrency=50,
    memory_connections=5000,
    memory_clients=2,
    memory_warmup_connections=50,
)

QUICK = Settings(
    rounds=1,
    warmup=0.3,
    duration=1.0,
    sizes=(256, 64 * KiB),
    connections=(1, 64),
    loops=("uvloop",),
    tls_row=False,
    deflate_row=False,
    handshake_loops=("uvloop",),
    handshake_compression=(False, True),
    handshake_warmup=0.3,
    handshake_duration=1.0,
    handshake_concurrency=50,
    memory_connections=1000,
    memory_clients=1,
    memory_warmup_connections=20,
    quick=True,
)
