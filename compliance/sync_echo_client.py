"""Client driver for Autobahn's fuzzingserver, on portside's threading API.

The same driver as ``echo_client.py``, written with :mod:`portside.sync.client`:
asks ``/getCaseCount``, runs each case in turn on
``/runCase?case=N&agent=AGENT`` by echoing every message until the server
closes, then asks ``/updateReports?agent=AGENT`` so that Autobahn writes its
reports.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if not __package__:
    # Run as a script: the shared pieces are in compliance/echo_client.py.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import portside
from compliance.echo_client import ERRORS, Progress, Settings, argument_parser, error_status
from portside.sync.client import connect


class Driver(Settings):
    """Runs the cases of one fuzzingserver for one agent."""

    def case_count(self) -> int:
        """Ask the fuzzingserver how many cases it runs."""
        with connect(self._uri("/getCaseCount"), **self._options()) as ws:
            message = ws.recv(timeout=self.case_timeout)
        return int(message)

    def run_case(self, number: int) -> str | None:
        """Run case ``number``; return a problem worth reporting, or ``None``."""
        deadline = time.monotonic() + self.case_timeout
        try:
            with connect(self._case_uri(number), **self._options()) as ws:
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
            with connect(self._reports_uri(), **self._options()) as ws:
                for _ in ws:
                    pass
        except portside.ConnectionClosed:
            pass


def drive(driver: Driver, cases: str | None) -> int:
    """Run the cases (all, or the numbers in ``cases``); return an exit status."""
    progress = Progress(driver.case_count(), cases)
    for number in progress.numbers:
        start = time.monotonic()
        progress.case(number, start, driver.run_case(number))
    driver.update_reports()
    return progress.done()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the cases."""
    args = argument_parser("portside threading client driver for Autobahn.").parse_args(argv)
    try:
        return drive(Driver.from_args(args), args.cases)
    except ERRORS as exc:
        return error_status(exc)


if __name__ == "__main__":
    sys.exit(main())
