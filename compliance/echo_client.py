"""Client driver for Autobahn's fuzzingserver, written against portside's public API.

Asks ``/getCaseCount``, runs each case in turn on ``/runCase?case=N&agent=AGENT``
by echoing every message until the server closes, then asks
``/updateReports?agent=AGENT`` so that Autobahn writes its reports.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.parse
from typing import Any, TypeVar

import portside

# Autobahn's largest messages are 16 MiB (cases 9.1.6 and 9.2.6).
MAX_SIZE = 2**25
MAX_QUEUE = 32
# Longer than Autobahn's own longest case timeout (480 s in 12.x and 13.x),
# so that only a hung client, never a slow case, hits it.
CASE_TIMEOUT = 600.0


def parse_case_numbers(spec: str, count: int) -> list[int]:
    """Turn ``"1-10,15"`` into case numbers, checked against ``count``.

    Raises:
        ValueError: If a number is not between 1 and ``count``.
    """
    numbers: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        first, sep, last = item.partition("-")
        low = int(first)
        high = int(last) if sep else low
        if not 1 <= low <= high <= count:
            raise ValueError(f"case range {item!r} is outside 1-{count}")
        numbers.extend(range(low, high + 1))
    return sorted(set(numbers))


_S = TypeVar("_S", bound="Settings")


class Settings:
    """The fuzzingserver to drive and the client's options: what both drivers share.

    The asyncio driver (here) and the threading one (``sync_echo_client.py``)
    subclass it and add the I/O.
    """

    def __init__(
        self,
        url: str,
        agent: str,
        *,
        compression: bool,
        max_size: int,
        max_queue: int,
        case_timeout: float,
    ) -> None:
        self.url = url.rstrip("/")
        self.agent = agent
        self.compression = compression
        self.max_size = max_size
        self.max_queue = max_queue
        self.case_timeout = case_timeout

    @classmethod
    def from_args(cls: type[_S], args: argparse.Namespace) -> _S:
        """The driver that the command line (:func:`argument_parser`) describes."""
        return cls(
            args.url,
            args.agent,
            compression=not args.no_compression,
            max_size=args.max_size,
            max_queue=args.max_queue,
            case_timeout=args.case_timeout,
        )

    def _uri(self, path: str, **params: str | int) -> str:
        query = urllib.parse.urlencode(params)
        return f"{self.url}{path}?{query}" if query else f"{self.url}{path}"

    def _case_uri(self, number: int) -> str:
        return self._uri("/runCase", case=number, agent=self.agent)

    def _reports_uri(self) -> str:
        return self._uri("/updateReports", agent=self.agent)

    def _options(self) -> dict[str, Any]:
        return {
            "compression": "deflate" if self.compression else None,
            "max_size": self.max_size,
            "max_queue": self.max_queue,
            "ping_interval": None,
        }


class Progress:
    """Prints one line per case run, and counts the cases with problems.

    Args:
        count: How many cases the fuzzingserver runs.
        cases: The case numbers to run (``"1-10,15"``); ``None``: all.

    Attributes:
        numbers: The case numbers to run, in order.
    """

    def __init__(self, count: int, cases: str | None) -> None:
        self.count = count
        self.numbers = parse_case_numbers(cases, count) if cases else list(range(1, count + 1))
        self.problems = 0
        print(f"fuzzingserver runs {count} cases; running {len(self.numbers)}", flush=True)

    def case(self, number: int, start: float, problem: str | None) -> None:
        """Report case ``number``, started at ``start`` (:func:`time.monotonic`)."""
        elapsed = time.monotonic() - start
        status = "ok" if problem is None else problem
        print(f"case {number}/{self.count}: {elapsed:.3f} s {status}", flush=True)
        if problem is not None:
            self.problems += 1

    def done(self) -> int:
        """Report the end of the run; return the exit status."""
        print(f"reports updated; {self.problems} case(s) with client-side problems", flush=True)
        return 0


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The command line that both drivers take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default="ws://127.0.0.1:9001", help="the fuzzingserver's URL")
    parser.add_argument("--agent", default="portside", help="agent name in the reports")
    parser.add_argument("--cases", help="case numbers to run, e.g. 1-10,15 (default: all)")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, help="largest message, bytes")
    parser.add_argument("--max-queue", type=int, default=MAX_QUEUE, help="messages buffered")
    parser.add_argument(
        "--case-timeout", type=float, default=CASE_TIMEOUT, help="seconds allowed per case"
    )
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    return parser


#: What ends a run early: the fuzzingserver cannot be reached, or --cases is wrong.
ERRORS = (portside.WebSocketException, OSError, ValueError)


def error_status(exc: BaseException) -> int:
    """Print why the run ended early; return the exit status."""
    print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 2


class Driver(Settings):
    """Runs the cases of one fuzzingserver for one agent."""

    async def case_count(self) -> int:
        """Ask the fuzzingserver how many cases it runs."""
        async with portside.connect(self._uri("/getCaseCount"), **self._options()) as ws:
            message = await ws.recv()
        return int(message)

    async def _echo(self, uri: str) -> None:
        try:
            async with portside.connect(uri, **self._options()) as ws:
                async for message in ws:
                    await ws.send(message)
        except portside.ConnectionClosed:
            pass  # Many cases end by failing the connection on purpose.

    async def run_case(self, number: int) -> str | None:
        """Run case ``number``; return a problem worth reporting, or ``None``."""
        try:
            await asyncio.wait_for(self._echo(self._case_uri(number)), self.case_timeout)
        except asyncio.TimeoutError:
            return f"gave up after {self.case_timeout:g} s"
        except (portside.WebSocketException, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    async def update_reports(self) -> None:
        """Have the fuzzingserver write its reports; return once it is done."""
        try:
            async with portside.connect(self._reports_uri(), **self._options()) as ws:
                async for _ in ws:
                    pass
        except portside.ConnectionClosed:
            pass


async def drive(driver: Driver, cases: str | None) -> int:
    """Run the cases (all, or the numbers in ``cases``); return an exit status."""
    progress = Progress(await driver.case_count(), cases)
    for number in progress.numbers:
        start = time.monotonic()
        progress.case(number, start, await driver.run_case(number))
    await driver.update_reports()
    return progress.done()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the cases."""
    parser = argument_parser("portside client driver for Autobahn.")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    driver = Driver.from_args(args)
    try:
        if args.loop == "uvloop":
            import uvloop

            return uvloop.run(drive(driver, args.cases))
        return asyncio.run(drive(driver, args.cases))
    except ERRORS as exc:
        return error_status(exc)


if __name__ == "__main__":
    sys.exit(main())
