"""The application server: ``portside serve``, :class:`App`, :func:`run`.

- :class:`App` bundles a handler with its ``serve()`` options, startup and
  shutdown hooks, and readiness checks.
- ``portside serve MODULE:ATTR`` (:mod:`portside.app.cli`) runs it with worker
  processes under a supervisor (:mod:`portside.app.supervisor`).
- :func:`run` and :class:`Runner` (:mod:`portside.app.run`) run it in one
  process, with the same signal handling and drain.

This package sits on top of :mod:`portside.asyncio`; nothing below imports it.
"""

from __future__ import annotations

from .app import App
from .run import Runner, run

__all__ = ["App", "Runner", "run"]
