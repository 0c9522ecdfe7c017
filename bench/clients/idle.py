"""Idle connections for the memory test, driven step by step by the harness.

The harness writes a command per line on stdin and waits for the answer line:

* at start: open, echo once and close ``--warmup-connections`` connections, so
  that the server's code paths and lazy imports are warm; answer ``ready``;
* ``open``: open ``--connections`` WebSocket connections, ``--concurrency`` at a
  time (offering permessage-deflate with ``--compression``, then requiring it);
  answer ``opened`` with how many succeeded;
* ``message``: send one small text message on every connection (compressed when
  deflate was negotiated) and check each echo; answer ``messaged``;
* ``close`` or end of input: exit, dropping every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable, Iterable

from bench.clients.common import emit
from bench.clients.rawws import RawClient
from bench.runtime import raise_nofile_limit, run_on_loop

STEP_TIMEOUT = 60.0
MESSAGE = '{"type": "hello", "seq": 1, "body": "an idle client says hi"}'


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.first_error: str | None = None

    def failure(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = repr(exc)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "failed": self.failed, "first_error": self.first_error}


async def bounded(
    jobs: Iterable[Callable[[], Awaitable[None]]], concurrency: int, tally: Tally
) -> None:
    """Run ``jobs``, at most ``concurrency`` at a time, counting outcomes in ``tally``."""
    semaphore = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            try:
                await asyncio.wait_for(job(), STEP_TIMEOUT)
            except Exception as exc:
                tally.failure(exc)
            else:
                tally.ok += 1

    await asyncio.gather(*(run(job) for job in jobs))


class Pool:
    """The client's connections."""

    def __init__(self, host: str, port: int, compression: bool, concurrency: int) -> None:
        self.host = host
        self.port = port
        self.compression = compression
        self.concurrency = concurrency
        self.clients: list[RawClient] = []

    async def open_one(self) -> None:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: RawClient(self.host, self.port, offer_deflate=self.compression),
            self.host,
            self.port,
        )
        try:
            await client.opened
        except BaseException:
            client.abort()
            raise
        self.clients.append(client)

    async def open(self, count: int) -> Tally:
        tally = Tally()
        await bounded((self.open_one for _ in range(count)), self.concurrency, tally)
        return tally

    async def message(self) -> Tally:
        tally = Tally()
        await bounded(
            (functools.partial(client.echo, MESSAGE) for client in self.clients),
            self.concurrency,
            tally,
        )
        return tally

    async def close(self) -> Tally:
        tally = Tally()
        await bounded((client.close for client in self.clients), self.concurrency, tally)
        self.clients.clear()
        return tally

    def drop(self) -> None:
        for client in self.clients:
            client.abort()
        self.clients.clear()


async def read_command() -> str:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip() or "close"


async def run(args: argparse.Namespace) -> int:
    if args.warmup_connections:
        warmup = Pool(args.host, args.port, args.compression, args.concurrency)
        for step in (warmup.open(args.warmup_connections), warmup.message(), warmup.close()):
            tally = await step
            if tally.failed:
                print(f"idle client: warm-up failed: {tally.first_error}", file=sys.stderr)
                return 1
    emit({"event": "ready"})
    pool = Pool(args.host, args.port, args.compression, args.concurrency)
    try:
        while True:
            command = await read_command()
            if command == "open":
                emit({"event": "opened", **(await pool.open(args.connections)).as_dict()})
            elif command == "message":
                emit({"event": "messaged", **(await pool.message()).as_dict()})
            elif command == "close":
                return 0
            else:
                print(f"idle client: unknown command {command!r}", file=sys.stderr)
                return 2
    finally:
        pool.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--warmup-connections", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    args = parser.parse_args()
    raise_nofile_limit(args.connections + args.concurrency + 64)
    return run_on_loop(run(args), "uvloop")


if __name__ == "__main__":
    raise SystemExit(main())
