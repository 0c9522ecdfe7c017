"""When and how soon a reconnecting client tries again, without I/O.

``async for ws in connect(uri)`` (and the threading layer's equivalent) calls
:func:`process_exception` on every failed attempt to tell a transient error,
worth retrying, from a fatal one, and waits the delays :func:`backoff` yields
between attempts. Both behave as websockets' functions of the same names.
"""

from __future__ import annotations

import os
import random
from collections.abc import Generator

from ..exceptions import InvalidMessage, InvalidStatus

__all__ = [
    "BACKOFF_FACTOR",
    "BACKOFF_INITIAL_DELAY",
    "BACKOFF_MAX_DELAY",
    "BACKOFF_MIN_DELAY",
    "RETRYABLE_STATUSES",
    "backoff",
    "process_exception",
]


def _setting(name: str, default: str) -> float:
    # PORTSIDE_<name>, else websockets' WEBSOCKETS_<name>, so that a deployment
    # configured for websockets keeps its settings.
    value = os.environ.get(f"PORTSIDE_{name}", os.environ.get(f"WEBSOCKETS_{name}", default))
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"PORTSIDE_{name} must be a number of seconds, not {value!r}") from None


#: The first delay is drawn at random between 0 and this many seconds.
BACKOFF_INITIAL_DELAY = _setting("BACKOFF_INITIAL_DELAY", "5")
#: The second delay, in seconds; each one after it is ``BACKOFF_FACTOR`` times longer...
BACKOFF_MIN_DELAY = _setting("BACKOFF_MIN_DELAY", "3.1")
#: ...until this many seconds, which every delay after is.
BACKOFF_MAX_DELAY = _setting("BACKOFF_MAX_DELAY", "90.0")
#: The growth of the delays: the golden ratio.
BACKOFF_FACTOR = _setting("BACKOFF_FACTOR", "1.618")

#: HTTP statuses that say the server (or a proxy in front of it) may recover.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


def backoff(
    initial_delay: float = BACKOFF_INITIAL_DELAY,
    min_delay: float = BACKOFF_MIN_DELAY,
    max_delay: float = BACKOFF_MAX_DELAY,
    factor: float = BACKOFF_FACTOR,
) -> Generator[float, None, None]:
    """Yield the delays between reconnection attempts, in seconds, forever.

    The first is random between 0 and ``initial_delay``, so that clients cut off
    together do not all come back at once (RFC 6455 section 7.2.3); then
    ``min_delay``, growing by ``factor`` each time up to ``max_delay``. With the
    defaults: 0-5, 3.1, 5.0, 8.1, 13.1, 21.3, 34.4, 55.7, 90, 90... seconds.
    The environment variables ``PORTSIDE_BACKOFF_INITIAL_DELAY``,
    ``PORTSIDE_BACKOFF_MIN_DELAY``, ``PORTSIDE_BACKOFF_MAX_DELAY`` and
    ``PORTSIDE_BACKOFF_FACTOR`` (or websockets' ``WEBSOCKETS_BACKOFF_...``)
    change the defaults.
    """
    yield random.random() * initial_delay
    delay = min_delay
    while delay < max_delay:
        yield delay
        delay *= factor
    while True:
        yield max_delay


def process_exception(exc: Exception) -> Exception | None:
    """Tell whether a failed connection attempt is worth retrying.

    The default for ``connect(process_exception=...)``. It retries on:

    - :class:`OSError` and :class:`TimeoutError`: the network failed (this
      includes python-socks' proxy errors, which are :class:`OSError`);
    - :class:`~portside.exceptions.InvalidMessage` caused by :class:`EOFError`:
      the connection closed during the opening handshake;
    - :class:`~portside.exceptions.InvalidStatus` with status 500, 502, 503 or
      504: the server or a proxy in front of it may recover.

    Every other error is fatal: retrying with the same parameters would most
    likely fail the same way (a 4xx status, a bad URI, a failed TLS check...).

    Returns:
        ``None`` to retry (the error is logged at INFO level); an exception,
        ``exc`` or another one, to stop and raise it.
    """
    if isinstance(exc, (OSError, TimeoutError)):
        return None
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError):
        return None
    if isinstance(exc, InvalidStatus) and exc.response.status_code in RETRYABLE_STATUSES:
        return None
    return exc
