"""Signals: one table says what each signal means to each kind of process.

A signal handler only puts the action's name in a queue; the process's one
dispatching loop takes actions from the queue, in order, and runs them. That keeps
signal handlers trivial (nothing can interleave with the code they interrupt) and
makes the behaviour readable from :data:`SIGNAL_ACTIONS` alone.

Where ``loop.add_signal_handler`` is missing (Windows), handlers installed with
``signal.signal`` hand the action to the loop with ``call_soon_threadsafe``. The
supervisor always installs them that way: see :class:`SignalQueue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["SIGNAL_ACTIONS", "SignalQueue", "actions_for"]

# signal name: (supervisor, worker, single process), None meaning "left alone".
# "interrupt" is a graceful stop the first time and "stop_now" the second.
# Workers ignore what only the supervisor acts on, so that a signal sent to the
# whole process group (a terminal, systemd's KillMode=control-group) does not
# kill them.
SIGNAL_ACTIONS: dict[str, tuple[str | None, str | None, str | None]] = {
    "SIGTERM": ("stop", "stop", "stop"),
    "SIGINT": ("interrupt", "interrupt", "interrupt"),
    "SIGQUIT": ("stop_now", "stop_now", "stop_now"),
    "SIGHUP": ("reload", "ignore", None),
    "SIGTTIN": ("add_worker", "ignore", None),
    "SIGTTOU": ("remove_worker", "ignore", None),
    "SIGUSR1": ("reopen_logs", "reopen_logs", None),
    "SIGCHLD": ("reap", None, None),
}

ROLES = ("supervisor", "worker", "single")


def actions_for(role: str) -> dict[signal.Signals, str]:
    """The signals ``role`` handles on this platform, and their actions."""
    column = ROLES.index(role)
    table = {}
    for name, actions in SIGNAL_ACTIONS.items():
        signum = getattr(signal, name, None)
        action = actions[column]
        if signum is not None and action is not None:
            table[signal.Signals(signum)] = action
    return table


class SignalQueue:
    """Signals turned into actions in an :class:`asyncio.Queue`.

    Args:
        loop: The running event loop.
        role: ``"supervisor"``, ``"worker"`` or ``"single"``.

    ``interrupt`` comes out as ``stop`` the first time and ``stop_now`` after.
    Outside the main thread, no handler can be installed: :attr:`installed` is
    false and the queue only holds what :meth:`put` puts in it.

    The supervisor's handlers are installed with ``signal.signal`` (not
    ``loop.add_signal_handler``), so that a signal's action is queued before
    the supervisor handles anything a worker sent after that signal: Python runs
    such a handler at once (before ``epoll`` is retried, or at the next
    bytecode), whereas the loop's handlers wait for a turn of the loop. A signal
    sent to the whole process group (Ctrl-C, systemd's ``KillMode``) reaches the
    supervisor before any worker can react to it, so ``stop`` comes out of the
    queue before the stop request of a worker that got the same signal (and
    that worker is drained, not replaced).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, role: str) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._interrupted = False
        self._installed: list[signal.Signals] = []
        self._previous: dict[signal.Signals, Any] = {}
        self._with_loop = role != "supervisor"
        self.installed = threading.current_thread() is threading.main_thread()
        if not self.installed:
            return
        for signum, action in actions_for(role).items():
            self._install(signum, action)

    def _install(self, signum: signal.Signals, action: str) -> None:
        if action == "ignore":
            self._previous[signum] = signal.signal(signum, signal.SIG_IGN)
            return
        if self._with_loop:
            try:
                self.loop.add_signal_handler(signum, self.put, action)
            except NotImplementedError:
                # No add_signal_handler (Windows): plain handlers from now on.
                self._with_loop = False
            else:
                self._installed.append(signum)
                return

        def handler(signum: int, frame: FrameType | None, action: str = action) -> None:
            self.loop.call_soon_threadsafe(self.put, action)

        self._previous[signum] = signal.signal(signum, handler)

    def put(self, action: str) -> None:
        """Enqueue ``action``: what a signal handler does; callable from the loop only."""
        if action == "interrupt":
            action = "stop_now" if self._interrupted else "stop"
            self._interrupted = True
        self.queue.put_nowait(action)

    def put_threadsafe(self, action: str) -> None:
        """Enqueue ``action`` from any thread."""
        self.loop.call_soon_threadsafe(self.put, action)

    async def get(self) -> str:
        """The next action."""
        return await self.queue.get()

    async def get_until(self, closed: asyncio.Future[Any] | None) -> str | None:
        """The next action, or ``None`` once ``closed`` (if any) is done.

        What a process's dispatching loop waits on while its server drains:
        ``closed`` is the server's ``wait_closed()``, and ``None`` ends the loop.
        """
        getting = asyncio.ensure_future(self.get())
        waiting: set[asyncio.Future[Any]] = {getting}
        if closed is not None:
            waiting.add(closed)
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if closed is not None and closed in done:
            getting.cancel()
            return None
        return getting.result()

    def close(self) -> None:
        """Remove the handlers; restore what was there before."""
        for signum in self._installed:
            with contextlib.suppress(Exception):
                self.loop.remove_signal_handler(signum)
        self._installed.clear()
        for signum, previous in self._previous.items():
            with contextlib.suppress(Exception):
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
