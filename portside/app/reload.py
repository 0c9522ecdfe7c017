"""``--reload``: a rolling restart whenever a Python source file changes.

Uses ``watchfiles`` when it is installed (``pip install 'portside[reload]'``),
and otherwise polls the modification times of ``*.py`` files once a second. A
reload is a rolling restart: the new worker must start (a syntax error leaves
the old one running, and the next change tries again), and the old one drains,
so a WebSocket left open cannot hold the reload up for longer than
``--graceful-timeout`` (uvicorn #2943).

Before reporting a change, the bytecode cached for each changed file
(``__pycache__/*.pyc``) is removed. Python trusts a cached file whose recorded
source modification time (in whole seconds) and size match the source's, so a
file saved twice within one second with the same size (an edit of one
character, a generated file, a ``git checkout``) would otherwise come back as
the old code in the new worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections.abc import Callable, Iterable

__all__ = ["POLL_INTERVAL", "forget_bytecode", "poll", "snapshot", "watch"]

logger = logging.getLogger("portside.app")

POLL_INTERVAL = 1.0
"""Seconds between two scans when ``watchfiles`` is missing."""

WATCH_TICK_MS = 500
"""How often (ms) watchfiles yields when nothing changed."""

SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})


def snapshot(directories: Iterable[str]) -> dict[str, int]:
    """The modification time (ns) of every ``*.py`` file under ``directories``.

    Hidden directories, virtualenvs and caches are skipped.
    """
    found: dict[str, int] = {}
    for directory in directories:
        for root, dirs, files in os.walk(directory):
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".")
                and d not in SKIPPED_DIRS
                and not os.path.exists(os.path.join(root, d, "pyvenv.cfg"))
            ]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    try:
                        found[path] = os.stat(path).st_mtime_ns
                    except OSError:
                        continue
    return found


def forget_bytecode(paths: Iterable[str]) -> None:
    """Remove the bytecode Python cached for each source file in ``paths``."""
    for path in paths:
        if not path.endswith(".py"):
            continue
        for optimization in ("", 1, 2):
            try:
                os.unlink(importlib.util.cache_from_source(path, optimization=optimization))
            except (OSError, NotImplementedError, ValueError):
                continue  # none cached (or no cache at all)


async def poll(
    directories: Iterable[str],
    on_change: Callable[[list[str]], None],
    interval: float = POLL_INTERVAL,
    before: dict[str, int] | None = None,
) -> None:
    """Scan ``directories`` every ``interval`` seconds; report changed files.

    ``before`` is the first scan, if it was made already.
    """
    directories = list(directories)
    if before is None:
        before = snapshot(directories)
    while True:
        await asyncio.sleep(interval)
        after = snapshot(directories)
        changed = sorted(
            path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
        )
        before = after
        if changed:
            forget_bytecode(changed)
            on_change(changed)


async def watch(directories: Iterable[str], on_change: Callable[[list[str]], None]) -> None:
    """Report changes to Python files under ``directories`` until cancelled."""
    directories = [os.path.abspath(d) for d in directories]
    if importlib.util.find_spec("watchfiles") is None:
        # The first scan before saying so: a change made after the line counts.
        before = snapshot(directories)
        logger.info(
            "--reload: polling %s (install watchfiles to be told at once)", ", ".join(directories)
        )
        await poll(directories, on_change, before=before)
        return
    import watchfiles

    watching = False
    async for changes in watchfiles.awatch(
        *directories,
        watch_filter=watchfiles.PythonFilter(),
        rust_timeout=WATCH_TICK_MS,
        yield_on_timeout=True,
    ):
        if not watching:
            # The first yield, empty or not, comes from a watcher in place.
            watching = True
            logger.info("--reload: watching %s", ", ".join(directories))
        if changes:
            changed = sorted({path for _, path in changes})
            forget_bytecode(changed)
            on_change(changed)
