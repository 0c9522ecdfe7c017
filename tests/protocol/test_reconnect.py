from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from portside.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from portside.protocol.headers import Headers
from portside.protocol.http11 import Response
from portside.protocol.reconnect import backoff, process_exception


def test_backoff_default_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("random.random", lambda: 0.5)
    delays = list(itertools.islice(backoff(), 11))
    assert delays[0] == 2.5  # half of the 5 s initial jitter
    assert delays[1:4] == [3.1, 3.1 * 1.618, 3.1 * 1.618**2]
    assert all(a < b for a, b in itertools.pairwise(delays[1:9]))
    assert delays[-2:] == [90.0, 90.0]


def test_backoff_arguments() -> None:
    delays = list(itertools.islice(backoff(0, 1, 4, 2), 6))
    assert delays == [0.0, 1, 2, 4, 4, 4]


def test_environment_changes_the_defaults() -> None:
    code = (
        "from portside.protocol import reconnect as r\n"
        "print(r.BACKOFF_MIN_DELAY, r.BACKOFF_MAX_DELAY)"
    )
    env = {**os.environ, "PORTSIDE_BACKOFF_MIN_DELAY": "1", "WEBSOCKETS_BACKOFF_MAX_DELAY": "7"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1.0", "7.0"]
    env["PORTSIDE_BACKOFF_FACTOR"] = "fast"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "PORTSIDE_BACKOFF_FACTOR must be a number of seconds, not 'fast'" in out.stderr


def status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "", Headers()))


def eof_message() -> InvalidMessage:
    exc = InvalidMessage("cut")
    exc.__cause__ = EOFError()
    return exc


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        OSError("network unreachable"),
        TimeoutError(),
        eof_message(),
        status(500),
        status(502),
        status(503),
        status(504),
    ],
)
def test_transient_errors_are_retried(exc: Exception) -> None:
    assert process_exception(exc) is None


@pytest.mark.parametrize(
    "exc",
    [
        status(400),
        status(401),
        status(404),
        status(501),
        InvalidMessage("garbage"),
        InvalidHandshake("bad"),
        InvalidURI("x", "bad"),
        ValueError(),
    ],
)
def test_other_errors_are_fatal(exc: Exception) -> None:
    assert process_exception(exc) is exc
