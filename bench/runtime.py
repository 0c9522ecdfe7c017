"""Process-level helpers shared by the echo servers and the load clients."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "raise_nofile_limit", "run_on_loop"]

T = TypeVar("T")

LOOPS = ("uvloop", "asyncio")


def raise_nofile_limit(needed: int = 0) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit.

    Raises:
        RuntimeError: If even the hard limit is below ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if needed and soft < needed:
        raise RuntimeError(f"RLIMIT_NOFILE is {soft}, {needed} file descriptors are needed")
    return soft


def run_on_loop(main: Coroutine[Any, Any, T], loop: str) -> T:
    """Run ``main`` to completion on a fresh uvloop or default asyncio event loop."""
    if loop == "uvloop":
        import uvloop

        result: T = uvloop.run(main)
        return result
    if loop == "asyncio":
        return asyncio.run(main)
    main.close()
    raise ValueError(f"unknown event loop {loop!r}; expected one of {LOOPS}")
