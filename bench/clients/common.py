"""What the load clients share: TLS without verification, the measuring window, output."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Window", "emit", "insecure_ssl_context", "measure"]


def insecure_ssl_context() -> ssl.SSLContext:
    """A client TLS context that accepts the harness's self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def emit(result: object) -> None:
    """Print one result line for the harness to read."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Window:
    """What a client counted during its measuring window."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "seconds": self.seconds, "rate": self.rate}


async def measure(counter: Callable[[], int], warmup: float, duration: float) -> Window:
    """Let the load run ``warmup`` seconds, then count for ``duration`` seconds.

    The window's start and end are announced on stdout so that the harness can
    sample CPU times at the same moments.
    """
    await asyncio.sleep(warmup)
    emit({"event": "window-start"})
    start_count, start = counter(), time.perf_counter()
    await asyncio.sleep(duration)
    end_count, end = counter(), time.perf_counter()
    emit({"event": "window-end"})
    return Window(end_count - start_count, end - start)
