"""Running a program's main coroutine on the fastest event loop available."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

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


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` like :func:`asyncio.run`, on uvloop when it is installed.

    Install it with ``pip install portside[uvloop]``; portside never requires it.
    Set ``PORTSIDE_NO_UVLOOP=1`` to use asyncio's own loop anyway.
    """
    if uvloop_available():
        import uvloop

        return uvloop.run(main, debug=debug)
    return asyncio.run(main, debug=debug)
