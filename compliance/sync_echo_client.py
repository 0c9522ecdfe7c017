"""Client driver for Autobahn's fuzzingserver, on portside's threading API.

The same driver as ``echo_client.py``, written with :mod:`portside.sync.client`:
asks ``/getCaseCount``, runs each case in turn on
``/runCase?case=N&agent=AGENT`` by echoing every message until the server
closes, then asks ``/updateReports?agent=AGENT`` so that Autobahn writes its
reports.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script: the shared pieces are in compliance/echo_client.py.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import portside
from compliance.echo_client import CASE_TIMEOUT, MAX_QUEUE, MAX_SIZE, parse_case_numbers
from portside.sync.client import connect


class Driver:
    """Runs the cases of one fuzzingserver for one agent."""

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

    def _uri(self, path: str, **params: str | int) -> str:
        query = urllib.parse.urlencode(params)
        return f"{self.url}{path}?{query}" if query else f"{self.url}{path}"

    def _options(self) -> dict[str, Any]:
        return {
            "compression": "deflate" if self.compression else None,
            "max_size": self.max_size,
            "max_queue": self.max_queue,
            "ping_interval": None,
        }

    def case_count(self) -> int:
        """Ask the fuzzingserver how many cases it runs."""
        with connect(self._uri("/getCaseCount"), **self._options()) as ws:
            message = ws.recv(timeout=self.case_timeout)
        return int(message)

    def run_case(self, number: int) -> str | None:
        """Run case ``number``; return a problem worth reporting, or ``None``."""
        uri = self._uri("/runCase", case=number, agent=self.agent)
        deadline = time.monotonic() + self.case_timeout
        try:
            with connect(uri, **self._options()) as ws:
                while True:
                    message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                    ws.send(message)
        except portside.ConnectionClosed:
            return None  # many cases end by failing the connection on purpose
        except TimeoutError:
            return f"gave up after {self.case_timeout:g} s"
        except (portside.WebSocketException, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def update_reports(self) -> None:
        """Have the fuzzingserver write its reports; return once it is done."""
        try:
            uri = self._uri("/updateReports", agent=self.agent)
            with connect(uri, **self._options()) as ws:
                for _ in ws:
                    pass
        except portside.ConnectionClosed:
            pass


def drive(driver: Driver, cases: str | None) -> int:
    """Run the cases (all, or the numbers in ``cases``); return an exit status."""
    count = driver.case_count()
    numbers = parse_case_numbers(cases, count) if cases else list(range(1, count + 1))
    print(f"fuzzingserver runs {count} cases; running {len(numbers)}", flush=True)
    problems = 0
    for number in numbers:
        start = time.monotonic()
        problem = driver.run_case(number)
        elapsed = time.monotonic() - start
        status = "ok" if problem is None else problem
        print(f"case {number}/{count}: {elapsed:.3f} s {status}", flush=True)
        if problem is not None:
            problems += 1
    driver.update_reports()
    print(f"reports updated; {problems} case(s) with client-side problems", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the cases."""
    parser = argparse.ArgumentParser(description="portside threading client driver for Autobahn.")
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
    args = parser.parse_args(argv)
    driver = Driver(
        args.url,
        args.agent,
        compression=not args.no_compression,
        max_size=args.max_size,
        max_queue=args.max_queue,
        case_timeout=args.case_timeout,
    )
    try:
        return drive(driver, args.cases)
    except (portside.WebSocketException, OSError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
