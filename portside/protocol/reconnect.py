"""When and how soon a reconnecting client tries again, without I/O.

``async for ws in connect(uri)`` (and the threading layer's equivalent) calls
:func:`process_exception` on every failed attempt to tell a transient error,
worth retrying, from a fatal one, and waits the delays :func:`backoff` yields
between attempts. Both behave as websockets' functions of the same names.
"""

from __future__ import annotations

import logging
import os
import random
import traceback
from collections.abc import Callable, Generator, Iterator
from typing import Any, Union

from ..exceptions import InvalidMessage, InvalidStatus

__all__ = [
    "BACKOFF_FACTOR",
    "BACKOFF_INITIAL_DELAY",
    "BACKOFF_MAX_DELAY",
    "BACKOFF_MIN_DELAY",
    "RETRYABLE_STATUSES",
    "RETRY_LATER_CLOSE_CODES",
    "Retry",
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

#: Close codes with which a server asks clients to come back later (service
#: restart, try again later, bad gateway): a reconnecting client waits its next
#: backoff delay before reconnecting after them.
RETRY_LATER_CLOSE_CODES = frozenset({1012, 1013, 1014})


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


class Retry:
    """The decisions of one reconnecting loop, between its attempts.

    ``async for ws in connect(...)`` (asyncio) and ``for ws in reconnect(...)``
    (threads) open a connection, hand it to the loop's body, and start over.
    After each attempt they ask this object how long to wait before the next:
    :meth:`after_failure` when opening the connection (or the body) raised,
    :meth:`after_close` when the connection ended. The I/O layer only waits.

    Args:
        process_exception: ``process_exception(exc)`` returns ``None`` to retry
            after ``exc``, or the exception to raise (``exc`` or another);
            raising works too, as in websockets.
        reconnect_delays: Returns an iterator of delays between attempts.
        logger: Where each retry is logged, at INFO level.
    """

    def __init__(
        self,
        process_exception: Callable[[Exception], Union[Exception, None]],
        reconnect_delays: Callable[[], Iterator[float]],
        logger: Union[logging.Logger, "logging.LoggerAdapter[Any]"],
    ) -> None:
        self.process_exception = process_exception
        self.reconnect_delays = reconnect_delays
        self.logger = logger
        self._delays: Iterator[float] | None = None

    def _next_delay(self) -> float:
        if self._delays is None:
            self._delays = self.reconnect_delays()
        return next(self._delays)

    def after_failure(self, exc: Exception) -> float:
        """Return the delay before retrying after ``exc``; raise if it is fatal.

        Raises:
            Exception: ``exc`` itself, or what ``process_exception`` returned
                or raised instead (chained to ``exc``).
        """
        try:
            fatal = self.process_exception(exc)
        except Exception as raised:
            fatal = raised
        if fatal is exc:
            raise exc
        if fatal is not None:
            raise fatal from exc
        delay = self._next_delay()
        self.logger.info(
            "connect failed; reconnecting in %.1f seconds: %s",
            delay,
            traceback.format_exception_only(type(exc), exc)[0].strip(),
        )
        return delay

    def after_close(self, code: int | None) -> float | None:
        """Return the delay before reconnecting after a connection that closed with ``code``.

        The next backoff delay when the server asked to come back later
        (:data:`RETRY_LATER_CLOSE_CODES`); otherwise ``None``: reconnect at
        once, and since the connection worked, start the delays anew at the
        next failure.
        """
        if code in RETRY_LATER_CLOSE_CODES:
            # The server asked to come back later: go on with backoff rather
            # than reconnecting at once.
            delay = self._next_delay()
            self.logger.info(
                "server closed with code %d; reconnecting in %.1f seconds", code, delay
            )
            return delay
        self._delays = None
        return None
