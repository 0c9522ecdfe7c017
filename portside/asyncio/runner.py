"""Running a program's main coroutine on the fastest event loop available."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from . import allocator

__all__ = ["run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    """Tell whether uvloop is installed and not disabled by ``PORTSIDE_NO_UVLOOP=1``."""
    if os.environ.get("PORTSIDE_NO_UVLOOP", "") not in ("", "0"):
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(
    main: Coroutine[Any, Any, T], *, debug: bool | None = None, tune_allocator: bool = True
) -> T:
    """Run ``main`` like :func:`asyncio.run`, on uvloop when it is installed.

    Install it with ``pip install portside[uvloop]``; portside never requires it.
    Set ``PORTSIDE_NO_UVLOOP=1`` to use asyncio's own loop anyway.

    Args:
        main: The program's main coroutine.
        debug: asyncio's debug mode, as in :func:`asyncio.run`.
        tune_allocator: Call :func:`portside.tune_allocator` first, so that
            large messages reuse freed memory instead of faulting in new pages.
    """
    if tune_allocator:
        allocator.tune_allocator()
    if uvloop_available():
        import uvloop

        return uvloop.run(main, debug=debug)
    return asyncio.run(main, debug=debug)
