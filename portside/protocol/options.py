"""Validation of the options that servers and clients of every I/O layer share."""

from __future__ import annotations

from dataclasses import dataclass

from .deflate import Deflate

__all__ = ["ConnectionOptions", "compression_option"]


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
