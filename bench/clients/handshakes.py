"""Connection churn: open and close WebSocket connections, many at a time, for a while.

Each worker loops on: TCP connect, opening handshake (offering permessage-deflate
with ``--compression`` and then requiring it), closing handshake, and waiting for
the server to close TCP. Prints ``{"count", "seconds", "rate", "failures"}``, the
count being complete open+close cycles within the measuring window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench.clients.common import emit, measure
from bench.clients.rawws import RawClient
from bench.runtime import raise_nofile_limit, run_on_loop

CYCLE_TIMEOUT = 10.0
# Give up early when the server refuses everything.
MAX_FAILURES_WITHOUT_SUCCESS = 200


class Churn:
    """State shared by the workers."""

    def __init__(self) -> None:
        self.cycles = 0
        self.failures = 0
        self.first_error: str | None = None
        self.stopping = False


async def cycle(host: str, port: int, compression: bool) -> None:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: RawClient(host, port, offer_deflate=compression), host, port
    )
    try:
        await client.opened
        await client.close()
    except BaseException:
        client.abort()
        raise


async def worker(host: str, port: int, compression: bool, churn: Churn) -> None:
    while not churn.stopping:
        try:
            await asyncio.wait_for(cycle(host, port, compression), CYCLE_TIMEOUT)
        except (OSError, asyncio.TimeoutError, Exception) as exc:
            churn.failures += 1
            if churn.first_error is None:
                churn.first_error = repr(exc)
            if churn.cycles == 0 and churn.failures >= MAX_FAILURES_WITHOUT_SUCCESS:
                churn.stopping = True
        else:
            churn.cycles += 1


async def run(args: argparse.Namespace) -> int:
    churn = Churn()
    workers = [
        asyncio.ensure_future(worker(args.host, args.port, args.compression, churn))
        for _ in range(args.concurrency)
    ]
    window = await measure(lambda: churn.cycles, args.warmup, args.duration)
    churn.stopping = True
    await asyncio.gather(*workers)
    if churn.cycles == 0:
        print(f"handshake client: no connection succeeded: {churn.first_error}", file=sys.stderr)
        return 1
    emit({**window.as_dict(), "failures": churn.failures, "first_error": churn.first_error})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    raise_nofile_limit(args.concurrency * 2 + 64)
    return run_on_loop(run(args), "uvloop")


if __name__ == "__main__":
    raise SystemExit(main())
