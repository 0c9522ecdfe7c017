"""Tuning glibc's allocator for a process that serves WebSocket messages.

An event loop reads every socket that is ready before the handlers run, so a
server allocates one buffer per message for a whole batch of connections, then
frees them all when the handlers have answered. With glibc's defaults the freed
memory at the top of the heap is handed back to the kernel as soon as it exceeds
128 KiB, and taken again on the next batch: every page of every large message is
then a fresh page, and the kernel must fault it in and zero it. At 64 KiB per
message that is 2 to 11 page faults per message, a tenth of the CPU time or more.

:func:`tune_allocator` keeps freed memory for reuse instead, up to a bound. The
cost is that a process may hold that much freed memory (32 MiB by default) that
it does not use at the moment. :func:`portside.run` calls it; call it yourself
when you start the event loop another way.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["tune_allocator", "TRIM_THRESHOLD", "MMAP_THRESHOLD"]

#: Freed memory at the top of the heap kept for reuse before glibc trims it.
TRIM_THRESHOLD = 32 << 20

#: Allocations from this size up get their own mapping, returned when freed.
#: glibc's own threshold adapts between 128 KiB and 32 MiB, but stops adapting
#: once the trim threshold is set, so it is set too: messages up to a few MiB
#: come from the heap, larger blocks still go straight back to the kernel.
MMAP_THRESHOLD = 4 << 20

# mallopt() parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Environment variables with which a user tunes glibc's allocator directly.
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def _user_tuned() -> bool:
    if any(name in os.environ for name in _USER_SETTINGS):
        return True
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(
        f"glibc.malloc.{name}" in tunables
        for name in ("trim_threshold", "mmap_threshold", "top_pad")
    )


def tune_allocator(
    *, trim_threshold: int = TRIM_THRESHOLD, mmap_threshold: int = MMAP_THRESHOLD
) -> bool:
    """Make glibc's allocator keep freed message buffers for reuse.

    Does nothing, and returns ``False``, when the C library is not glibc, when
    ``PORTSIDE_NO_ALLOCATOR_TUNING=1`` is set, or when the environment already
    tunes the allocator (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TOP_PAD_`` or the matching ``GLIBC_TUNABLES``): the user's choice wins.

    Args:
        trim_threshold: Bytes of freed memory kept at the top of the heap.
        mmap_threshold: Allocations at least this large are mapped on their own.

    Returns:
        Whether the allocator was tuned.

    Raises:
        ValueError: If a threshold is negative.
    """
    if trim_threshold < 0 or mmap_threshold < 0:
        raise ValueError("allocator thresholds must be >= 0")
    if os.environ.get("PORTSIDE_NO_ALLOCATOR_TUNING", "") not in ("", "0"):
        return False
    if platform.libc_ver()[0] != "glibc" or _user_tuned():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    # mallopt() returns 1 on success, 0 on error.
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
