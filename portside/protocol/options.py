"""Validation of the options that servers and clients of every I/O layer share.

``serve()`` and ``connect()`` of the asyncio and threading layers check their
options here, once, so that a wrong option gets the same clear error whichever
layer it is given to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from .deflate import Deflate
from .headers import HeadersLike
from .server import Origin

__all__ = [
    "ConnectionOptions",
    "LoggerLike",
    "check_callable",
    "check_open_timeout",
    "compression_option",
    "logger_option",
    "origins_option",
    "request_headers_option",
]

LoggerLike = Union[logging.Logger, "logging.LoggerAdapter[Any]"]
"""What the ``logger`` options take (besides a logger's name)."""


def _check_timeout(name: str, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, not {value!r}")


@dataclass(frozen=True)
class ConnectionOptions:
    """Per-connection settings, validated once per server or client."""

    max_size: int | None
    max_queue: int | None
    read_limit: int
    write_limit: int
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float | None

    @classmethod
    def validate(
        cls,
        *,
        max_size: int | None,
        max_queue: int | None,
        read_limit: int,
        write_limit: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
    ) -> ConnectionOptions:
        """Check every option; raise one clear error for the first wrong one.

        Raises:
            ValueError: If an option is out of range.
            TypeError: If an option has the wrong type.
        """
        for name, value in (("max_size", max_size), ("max_queue", max_queue)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int or None, not {value!r}")
        for name, value in (("read_limit", read_limit), ("write_limit", write_limit)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {value!r}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0 or None, not {max_size}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 or None, not {max_queue}")
        if read_limit < 256:
            raise ValueError(f"read_limit must be >= 256 bytes, not {read_limit}")
        if write_limit < 0:
            raise ValueError(f"write_limit must be >= 0, not {write_limit}")
        _check_timeout("ping_interval", ping_interval)
        _check_timeout("ping_timeout", ping_timeout)
        _check_timeout("close_timeout", close_timeout)
        if ping_interval == 0:
            raise ValueError("ping_interval must be > 0, or None to disable keepalive pings")
        return cls(
            max_size=max_size,
            max_queue=max_queue,
            read_limit=read_limit,
            write_limit=write_limit,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
        )


def compression_option(value: object) -> Deflate | None:
    """Turn the ``compression`` option into :class:`Deflate` settings or ``None``.

    Raises:
        ValueError: If ``value`` is not ``"deflate"``, ``None`` or a :class:`Deflate`.
    """
    if value is None:
        return None
    if value == "deflate":
        return Deflate()
    if isinstance(value, Deflate):
        return value
    raise ValueError(f"compression must be 'deflate', None or a portside.Deflate, not {value!r}")


def check_open_timeout(open_timeout: float | None) -> None:
    """Check the ``open_timeout`` option.

    Raises:
        ValueError: If it is negative (or NaN) rather than ``>= 0`` or ``None``.
    """
    if open_timeout is not None and not open_timeout >= 0:
        raise ValueError(f"open_timeout must be >= 0 or None, not {open_timeout}")


def check_callable(
    name: str, value: object, what: str = "callable or None", *, optional: bool = True
) -> None:
    """Check that a hook (``handler``, ``process_request``...) is callable.

    Args:
        name: The option's name, for the message.
        value: The option's value.
        what: What the message says the option must be.
        optional: Whether ``None`` is a valid value (no hook).

    Raises:
        TypeError: If ``value`` is not callable (nor ``None``, when optional).
    """
    if not callable(value) and not (optional and value is None):
        raise TypeError(f"{name} must be {what}")


def logger_option(logger: LoggerLike | str | None, default: str) -> LoggerLike:
    """Turn the ``logger`` option (a logger, its name or ``None``) into a logger.

    Args:
        logger: The option's value.
        default: The logger's name when ``logger`` is ``None``.
    """
    if isinstance(logger, str):
        return logging.getLogger(logger)
    if logger is None:
        return logging.getLogger(default)
    return logger


def request_headers_option(
    extra_headers: HeadersLike | None, additional_headers: HeadersLike | None
) -> HeadersLike | None:
    """Return the extra request headers of a client, given under either name.

    Raises:
        TypeError: If both ``extra_headers`` and ``additional_headers`` are given.
    """
    if extra_headers is not None and additional_headers is not None:
        raise TypeError("pass extra_headers or additional_headers, not both")
    return extra_headers if extra_headers is not None else additional_headers


def origins_option(origins: Sequence[Origin] | None) -> list[Origin] | None:
    """Check the ``origins`` option of a server; return it as a list.

    Raises:
        TypeError: If an item is not a string, a compiled pattern or ``None``.
    """
    if origins is None:
        return None
    allowed = list(origins)
    for origin in allowed:
        if origin is not None and not isinstance(origin, str) and not hasattr(origin, "fullmatch"):
            raise TypeError(f"origins must hold strings, compiled patterns or None, not {origin!r}")
    return allowed
