"""The receive path of connections: the C accelerator when built, else pure Python.

``PORTSIDE_NO_SPEEDUPS=1`` selects the pure-Python implementation, as for
:mod:`portside.protocol.speedups`.

The C ``ConnectionBase`` also brings ``recv()``, ``send()`` and ``__anext__()``:
they return an ``Operation``, a coroutine written in C that handles the common
cases itself and runs the Python methods for the rest. A C ``recv()`` waits on a
``Waiter``, a future that ``buffer_updated()`` completes and whose task it
resumes at the end of the read, without a turn of the event loop. On asyncio's
selector loop, the C ``ConnectionBase`` also reads from and writes to its socket
itself, as the loop's socket transport would, and on uvloop it writes when the
transport's ``write()`` would send at once (``_hook_transport()``).

Attributes:
    IMPLEMENTATION: ``"c"`` or ``"python"``, whichever was loaded.
"""

from __future__ import annotations

import collections.abc

from ..protocol.speedups import WANTED, load_accelerator
from ._pyspeedups import ConnectionBase

__all__ = ["IMPLEMENTATION", "ConnectionBase"]

IMPLEMENTATION = "python"

_speedups = load_accelerator(f"{__package__}._speedups") if WANTED else None
if _speedups is not None:  # pragma: no cover - depends on the build
    # The C twin of the same class; type checkers see the Python one.
    ConnectionBase = _speedups.ConnectionBase  # type: ignore[misc]
    IMPLEMENTATION = "c"
    # So that asyncio.create_task() and asyncio.iscoroutine() take it.
    collections.abc.Coroutine.register(_speedups.Operation)
