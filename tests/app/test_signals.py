"""The signal table, and signals turned into queued actions."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

from portside.app.signals import SIGNAL_ACTIONS, SignalQueue, actions_for


def test_the_table() -> None:
    supervisor = actions_for("supervisor")
    assert supervisor[signal.SIGTERM] == "stop"
    assert supervisor[signal.SIGHUP] == "reload"
    assert supervisor[signal.SIGTTIN] == "add_worker"
    assert supervisor[signal.SIGTTOU] == "remove_worker"
    assert supervisor[signal.SIGUSR1] == "reopen_logs"
    worker = actions_for("worker")
    assert worker[signal.SIGHUP] == "ignore"
    assert signal.SIGCHLD not in worker
    assert set(actions_for("single")) == {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
    assert all(len(actions) == 3 for actions in SIGNAL_ACTIONS.values())


async def test_signals_become_actions_in_order() -> None:
    queue = SignalQueue(asyncio.get_running_loop(), "worker")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await queue.get() == "reopen_logs"
        os.kill(os.getpid(), signal.SIGINT)
        assert await queue.get() == "stop"
        # A second SIGINT: stop now.
        os.kill(os.getpid(), signal.SIGINT)
        assert await queue.get() == "stop_now"
        # Ignored by workers: SIGHUP does not kill this process.
        os.kill(os.getpid(), signal.SIGHUP)
        queue.put_threadsafe("from elsewhere")
        assert await queue.get() == "from elsewhere"
    finally:
        queue.close()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


async def test_outside_the_main_thread_nothing_is_installed() -> None:
    loop = asyncio.get_running_loop()
    made: list[SignalQueue] = []
    thread = threading.Thread(target=lambda: made.append(SignalQueue(loop, "single")))
    thread.start()
    thread.join()
    (queue,) = made
    assert not queue.installed
    queue.put_threadsafe("stop")
    assert await queue.get() == "stop"
    queue.close()
