"""The supervisor of ``portside serve``: starts the workers, watches them, replaces them.

One asyncio loop dispatches every action in turn: the signals of
:data:`~portside.app.signals.SIGNAL_ACTIONS` (their handlers only enqueue),
messages from the workers (``ready``, ``beat``, ``fatal``, ``recycle``) and
their exits. In short:

- start-up: bind (:mod:`portside.app.listeners`), start ``--workers`` workers,
  wait until each says ``ready``, then log one line and tell systemd
  ``READY=1``. A worker that fails to start stops everything with its error
  (one line on stderr) and its status: 2 for an import or configuration error,
  3 for a startup hook that raised.
- SIGTERM, SIGINT: every worker drains (``/readyz`` 503, stop accepting, Close
  1001, ``--graceful-timeout``); the supervisor exits 0 once all are gone.
  A second SIGINT, or SIGQUIT: stop now.
- SIGHUP (and ``--reload``): rolling restart, one worker at a time: a new
  worker, loading the code as it is now, must say ``ready`` before the old one
  drains with ``--restart-close-code`` (1012). If the new one fails to start,
  the restart stops there and the old workers keep serving.
- SIGTTIN, SIGTTOU: one worker more, one fewer. SIGUSR1: reopen log files.
- A worker that exits without being asked to (it crashed, was killed, or
  exited 0 of its own accord) is replaced: at once, then with exponential
  backoff if its slot keeps losing its worker, and while a slot waits for its
  next worker its socket is closed, so that no connection waits in a queue
  nobody serves. One blocked longer than ``--timeout`` is killed and replaced.
  Five failures (a status other than 0, or a signal) within a minute stop the
  server (status 1); a clean exit does not count.
- A worker that reaches ``--worker-max-connections-served`` or
  ``--worker-max-rss`` asks to be replaced, and is, as in a rolling restart.
  So is a worker sent SIGTERM or SIGINT on its own (not with its process
  group): it asks, and drains once its successor is ready.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any

from . import logs, metrics
from .channel import Channel
from .config import Config
from .listeners import BindError, Listeners, systemd_sockets
from .sdnotify import Notifier
from .signals import SignalQueue
from .worker import SPEC_ENV, beat_interval

__all__ = ["CRASH_LIMIT", "CRASH_WINDOW", "KILL_GRACE", "Supervisor", "print_error"]

logger = logging.getLogger("portside.app")

CRASH_LIMIT = 5
"""Worker crashes within :data:`CRASH_WINDOW` seconds that stop the server."""
CRASH_WINDOW = 60.0
KILL_GRACE = 5.0
"""Seconds past ``--graceful-timeout`` after which a draining worker is killed."""
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

WORKER_CODE = "import portside.app.worker as w; raise SystemExit(w.main())"


def print_error(message: str) -> None:
    """One line on stderr: what stops ``portside serve`` before it runs."""
    sys.stderr.write(f"portside: error: {message}\n")
    sys.stderr.flush()


def raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard one, for this process and its workers.

    Each connection is a file descriptor, and the usual soft limit (1024) is far
    below what a WebSocket server holds; the hard limit is what the administrator
    allows (systemd's ``LimitNOFILE=``, ``ulimit -Hn``).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # pragma: no cover - refused by the system
            logger.warning("could not raise the open files limit from %d", soft)
        else:
            logger.debug("open files limit raised from %d to %d", soft, target)


def describe_status(status: int) -> str:
    """How a process ended, in words."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exited with status {status}"


class WorkerHandle:
    """The supervisor's view of one worker process."""

    def __init__(
        self, supervisor: Supervisor, slot: int, purpose: str, popen: subprocess.Popen[bytes]
    ) -> None:
        self.supervisor = supervisor
        self.slot = slot
        # boot, respawn, reload, recycle, scale: what a failure to start means.
        self.purpose = purpose
        self.popen = popen
        loop = asyncio.get_running_loop()
        self.state = "starting"  # then ready, draining, gone
        self.started_at = loop.time()
        self.last_beat = loop.time()
        self.ready: asyncio.Future[bool] = loop.create_future()
        # Set when the worker says it stopped accepting (or is gone).
        self.not_accepting: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.fatal: tuple[int, str] | None = None
        self.kill_reason: str | None = None
        self.drain_deadline: float | None = None
        self.replaced_by: WorkerHandle | None = None
        # The supervisor asked it to go for good, and its slot is seen to (a
        # successor serves it, or it was closed): its exit is no loss.
        self.retired = False
        self.channel: Channel | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def __str__(self) -> str:
        return f"worker {self.pid} (slot {self.slot})"

    def on_message(self, message: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        self.last_beat = loop.time()
        event = message.get("event")
        if event == "ready":
            if self.state == "starting":
                self.state = "ready"
            if not self.ready.done():
                self.ready.set_result(True)
                if self.supervisor.booted:
                    logger.info("%s ready", self)
        elif event == "fatal":
            self.fatal = (int(message.get("status", EXIT_FAILED)), str(message.get("message")))
        elif event == "recycle":
            self.supervisor.recycle(self, str(message.get("cause", "recycle")))
        elif event == "stop_request":
            # Queued after this loop turn: a signal that reached the supervisor
            # too is queued first (see SignalQueue), and wins.
            loop.call_soon(self.supervisor.enqueue, f"worker_stop:{self.pid}")
        elif event == "draining":
            if self.state != "gone":
                self.state = "draining"
            if not self.not_accepting.done():
                self.not_accepting.set_result(None)
            if self.drain_deadline is None:
                # Stopped accepting without being asked to.
                loop.call_soon(self.supervisor.enqueue, f"worker_draining:{self.pid}")

    def on_eof(self) -> None:
        self.supervisor.reap()

    def send(self, event: str, **fields: Any) -> None:
        if self.channel is not None:
            self.channel.send(event, **fields)

    def drain(self, code: int) -> None:
        """Tell the worker to drain with ``code``; kill it if it outlives the deadline."""
        if self.state == "gone":
            return
        loop = asyncio.get_running_loop()
        if self.drain_deadline is None:
            self.drain_deadline = (
                loop.time() + self.supervisor.config.workers.graceful_timeout + KILL_GRACE
            )
        if self.state != "starting":
            self.state = "draining"
        self.send("drain", code=code)

    def retire(self, code: int) -> None:
        """Drain it for good: its slot is seen to, its exit needs no successor."""
        self.retired = True
        self.drain(code)

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)


class Supervisor:
    """Runs ``portside serve``: :meth:`run` returns the exit status.

    Args:
        config: The settings, checked.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.workers: list[WorkerHandle] = []
        self.stopping = False
        self.crashes: collections.deque[float] = collections.deque()
        # Unrequested exits in a row per slot, for the backoff.
        self.slot_exits: dict[int, int] = {}
        self.reload_again = False
        self.restarting: asyncio.Task[None] | None = None
        self.replace_lock: asyncio.Lock | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.respawns: dict[int, asyncio.TimerHandle] = {}
        self.metrics: metrics.SupervisorMetrics | None = None
        self.metrics_dir: str | None = None
        self.listeners: Listeners | None = None
        self.signals: SignalQueue | None = None
        self.notifier = Notifier()
        self.done: asyncio.Future[int] | None = None
        self.booted = False
        self.target_count = 0

    # Start and stop.

    def run(self) -> int:
        """Serve until stopped; return the exit status."""
        return asyncio.run(self.main())

    def prepare(self) -> int | None:
        """Everything that can fail before a worker starts; an exit status on failure."""
        config = self.config
        if config.loop == "uvloop":
            import importlib.util

            if importlib.util.find_spec("uvloop") is None:
                print_error(
                    "--loop uvloop: uvloop is not installed (pip install 'portside[uvloop]')"
                )
                return EXIT_CONFIG
        if config.endpoints.metrics_path is not None:
            if not metrics.available():
                print_error(
                    "--metrics-path needs prometheus_client (pip install 'portside[metrics]')"
                )
                return EXIT_CONFIG
            existing = os.environ.get(metrics.MULTIPROC_ENV)
            if existing:
                self.metrics_dir = existing
            else:
                self.metrics_dir = tempfile.mkdtemp(prefix="portside-metrics-")
                os.environ[metrics.MULTIPROC_ENV] = self.metrics_dir
                self._created_metrics_dir = True
        try:
            from .appserver import make_ssl_context

            make_ssl_context(config.listen)
        except (OSError, ValueError) as exc:
            print_error(f"TLS (--certfile, --keyfile, --ca-certs): {exc}")
            return EXIT_CONFIG
        inherited = systemd_sockets()
        if inherited and config.explicit & {"bind"}:
            logger.info("listening on the sockets systemd passed; --bind is ignored")
        self.listeners = Listeners(config.listen, inherited)
        try:
            self.listeners.open()
        except BindError as exc:
            print_error(str(exc))
            return EXIT_CONFIG
        raise_open_files_limit()
        count = config.workers.count
        if count == 0:
            count = (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
        self.target_count = count
        return None

    async def main(self) -> int:
        """Start, serve, stop; return the exit status."""
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.replace_lock = asyncio.Lock()
        self._created_metrics_dir = False
        status = self.prepare()
        if status is not None:
            self.cleanup()
            return status
        if self.metrics_dir is not None:
            self.metrics = metrics.SupervisorMetrics()
        self.signals = SignalQueue(loop, "supervisor")
        self.spawn_task(self.dispatch())
        self.spawn_task(self.watch_workers())
        self.spawn_task(self.boot())
        try:
            return await self.done
        finally:
            for task in list(self.tasks):
                task.cancel()
            for handle in self.respawns.values():
                handle.cancel()
            for worker in self.workers:
                worker.kill("supervisor exiting")
                with contextlib.suppress(Exception):
                    worker.popen.wait(5)
            self.signals.close()
            self.cleanup()

    def cleanup(self) -> None:
        """Close the listening sockets; remove the metrics directory this run created."""
        if self.listeners is not None:
            self.listeners.close()
        if self.metrics_dir is not None and getattr(self, "_created_metrics_dir", False):
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task that fails the server if it raises."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("supervisor task failed", exc_info=task.exception())
            self.finish(EXIT_FAILED)

    def finish(self, status: int) -> None:
        """End :meth:`main` with ``status``."""
        if self.done is not None and not self.done.done():
            self.done.set_result(status)

    def fail(self, status: int, message: str) -> None:
        """Stop everything because of ``message``; exit with ``status``."""
        if self.done is None or self.done.done():
            return
        if self.booted:
            logger.error("%s; stopping", message)
        else:
            print_error(message)
        self.stopping = True
        self.notifier.stopping(message)
        for worker in list(self.workers):
            worker.kill("stopping after a failure")
        self.finish(status)

    async def boot(self) -> None:
        """Start the first workers; once all are ready, announce it."""
        assert self.listeners is not None
        starting = [self.spawn(slot, "boot") for slot in range(self.target_count)]
        for worker in starting:
            if not await worker.ready:
                return  # worker_exited() failed the server
        if self.stopping:
            return
        self.booted = True
        where = ", ".join(self.listeners.descriptions)
        pids = ", ".join(str(worker.pid) for worker in starting)
        workers = f"{len(starting)} worker{'s' if len(starting) > 1 else ''}"
        logger.info(
            "serving %s on %s with %s (pids %s)", self.config.target.app, where, workers, pids
        )
        self.notifier.ready(f"serving on {where} with {workers}")
        if self.metrics is not None:
            self.metrics.workers.set(len(self.workers))
        if self.config.workers.reload:
            from .reload import watch

            self.spawn_task(watch(self.config.workers.reload_dirs, self.changed))

    def changed(self, paths: list[str]) -> None:
        """``--reload``: files changed; enqueue a rolling restart."""
        assert self.signals is not None
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        logger.info("changed: %s: reloading", shown)
        self.signals.put("reload")

    # Workers.

    def spawn(self, slot: int, purpose: str) -> WorkerHandle:
        """Start a worker process for ``slot``."""
        assert self.listeners is not None
        sockets = self.listeners.for_slot(slot)
        parent, child = socket.socketpair()
        fds = [sock.fileno() for sock in sockets]
        spec = {
            "values": self.config.values,
            "explicit": sorted(self.config.explicit),
            "control_fd": child.fileno(),
            "fds": fds,
            "slot": slot,
        }
        env = dict(os.environ)
        env[SPEC_ENV] = json.dumps(spec)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-c", WORKER_CODE], env=env, pass_fds=[child.fileno(), *fds]
            )
        finally:
            child.close()
        worker = WorkerHandle(self, slot, purpose, popen)
        worker.channel = Channel(parent, worker.on_message, worker.on_eof)
        worker.channel.start(asyncio.get_running_loop())
        self.workers.append(worker)
        logger.debug("started %s (%s)", worker, purpose)
        return worker

    def reap(self) -> None:
        """Collect the workers that exited."""
        for worker in list(self.workers):
            status = worker.popen.poll()
            if status is not None:
                self.worker_exited(worker, status)

    def worker_exited(self, worker: WorkerHandle, status: int) -> None:
        """A worker is gone: account for it, and replace it or stop, as the case may be."""
        worker.state = "gone"
        self.workers.remove(worker)
        if self.done is not None and self.done.done():
            return  # stopping after a failure: that was said already
        if worker.channel is not None:
            worker.channel.close()
        if self.metrics is not None:
            self.metrics.worker_gone(worker.pid)
            self.metrics.workers.set(len(self.workers))
        if not worker.exited.done():
            worker.exited.set_result(status)
        if not worker.not_accepting.done():
            worker.not_accepting.set_result(None)
        never_ready = not worker.ready.done()
        if never_ready:
            worker.ready.set_result(False)
        how = describe_status(status)
        if self.stopping:
            logger.info("%s %s", worker, how)
            if not self.workers:
                self.finish(EXIT_OK)
            return
        if worker.retired:
            if status == 0:
                logger.info("%s drained and exited", worker)
            else:
                logger.warning("%s %s while draining", worker, how)
            return
        if never_ready and worker.purpose != "respawn":
            if worker.purpose == "boot":
                # Start-up failed: stop with the worker's error (or how it ended).
                self.fail(*(worker.fatal or (EXIT_FAILED, f"{worker} {how} while starting")))
                return
            if worker.purpose == "scale":
                self.abandon_slot(worker.slot)
            # A successor (reload, recycle, signal) that failed: replace() sees to it.
            if worker.fatal is not None:
                logger.error("%s failed to start: %s", worker, worker.fatal[1])
            else:
                logger.error("%s %s before it was ready", worker, how)
            return
        if never_ready and worker.fatal is not None:
            self.fail(*worker.fatal)  # the replacement of a worker cannot start
            return
        self.unrequested_exit(worker, status, how)

    def unrequested_exit(self, worker: WorkerHandle, status: int, how: str) -> None:
        """A worker exited without being asked to: replace it, with backoff.

        A failure (a status other than 0, a signal) counts toward the crash
        limit; a clean exit (status 0: the process chose to stop) does not, but
        takes the same backoff, so that a worker that keeps exiting cannot spin.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        if status != 0:
            cause = worker.kill_reason or "died"
            if worker.kill_reason != "blocked":
                logger.error("%s %s", worker, how)
            self.crashes.append(now)
            while self.crashes and self.crashes[0] < now - CRASH_WINDOW:
                self.crashes.popleft()
            if len(self.crashes) >= CRASH_LIMIT:
                self.fail(
                    EXIT_FAILED,
                    f"{len(self.crashes)} worker crashes within {CRASH_WINDOW:g} s "
                    f"(last: {worker} {how})",
                )
                return
        elif worker.drain_deadline is not None:
            cause = "signal"
            logger.info("%s drained and exited", worker)
        else:
            cause = "exited"
            logger.warning("%s exited with status 0 without being asked to", worker)
        if worker.replaced_by is not None:
            return  # its successor is on its way
        if now - worker.started_at > CRASH_WINDOW:
            self.slot_exits[worker.slot] = 0
        exits = self.slot_exits.get(worker.slot, 0) + 1
        self.slot_exits[worker.slot] = exits
        delay = 0.0 if exits == 1 else min(BACKOFF_FIRST * 2 ** (exits - 2), BACKOFF_MAX)
        if self.metrics is not None:
            self.metrics.worker_restarts.labels(cause).inc()
        if delay:
            # Nobody accepts from the slot's socket until then: close it (the
            # connections it holds are reset) rather than let them wait.
            assert self.listeners is not None
            self.listeners.release_slot(worker.slot)
            logger.info("replacing it in %.1f s (its socket closed meanwhile)", delay)
        self.respawns[worker.slot] = loop.call_later(delay, self._respawn, worker.slot)

    def _respawn(self, slot: int) -> None:
        self.respawns.pop(slot, None)
        if self.stopping:
            return
        try:
            self.spawn(slot, "respawn")
        except BindError as exc:
            self.fail(EXIT_FAILED, f"cannot listen again for a new worker: {exc}")

    def abandon_slot(self, slot: int) -> None:
        """A worker added by SIGTTIN failed to start: close its slot's socket."""
        assert self.listeners is not None
        self.target_count -= 1
        if not any(w.slot == slot and not w.retired for w in self.workers):
            self.listeners.release_slot(slot)

    def find(self, pid: str) -> WorkerHandle | None:
        """The worker whose process id is ``pid`` (a string), if it is still there."""
        return next((w for w in self.workers if str(w.pid) == pid), None)

    async def watch_workers(self) -> None:
        """Kill workers that stopped beating or outlived their drain; reap the dead."""
        loop = asyncio.get_running_loop()
        timeout = self.config.workers.timeout
        interval = beat_interval(timeout)
        while True:
            await asyncio.sleep(interval)
            self.reap()
            now = loop.time()
            for worker in list(self.workers):
                if worker.kill_reason is not None:
                    continue
                if now - worker.last_beat > timeout:
                    logger.error(
                        "%s: event loop blocked for more than %g s (--timeout): killing it",
                        worker,
                        timeout,
                    )
                    worker.kill("blocked")
                elif worker.drain_deadline is not None and now > worker.drain_deadline:
                    logger.error(
                        "%s still running %g s after --graceful-timeout: killing it",
                        worker,
                        KILL_GRACE,
                    )
                    worker.kill("drain_timeout")

    # Actions.

    async def dispatch(self) -> None:
        """The one loop that runs the actions signals enqueue."""
        assert self.signals is not None
        while True:
            action = await self.signals.get()
            name, _, argument = action.partition(":")
            handler = getattr(self, f"handle_{name}", None)
            if handler is None:  # pragma: no cover - the table and the handlers match
                logger.warning("no handler for %s", action)
                continue
            if argument:
                handler(argument)
            else:
                handler()

    def enqueue(self, action: str) -> None:
        """Queue an action from a worker's message, behind the signals received so far."""
        if self.signals is not None:
            self.signals.put(action)

    def handle_reap(self) -> None:
        """SIGCHLD: collect the workers that exited."""
        self.reap()

    def handle_stop(self) -> None:
        """SIGTERM, first SIGINT: drain every worker, then exit 0."""
        if self.stopping:
            return
        self.stopping = True
        count = len(self.workers)
        logger.info(
            "stopping: draining %d worker%s (--graceful-timeout %g s)",
            count,
            "" if count == 1 else "s",
            self.config.workers.graceful_timeout,
        )
        self.notifier.stopping("draining")
        for handle in self.respawns.values():
            handle.cancel()
        self.respawns.clear()
        if self.restarting is not None:
            self.restarting.cancel()
        # New connections are refused from now on; the queues go with the sockets.
        if self.listeners is not None:
            self.listeners.close()
        for worker in self.workers:
            worker.drain(1001)
        if not self.workers:
            self.finish(EXIT_OK)

    def handle_stop_now(self) -> None:
        """SIGQUIT, second SIGINT: workers cancel their handlers now."""
        self.handle_stop()
        logger.info("stopping now")
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            worker.send("stop_now")
            worker.drain_deadline = min(
                worker.drain_deadline or float("inf"), loop.time() + KILL_GRACE
            )

    def handle_reload(self) -> None:
        """SIGHUP (or --reload): a rolling restart, or another one after it."""
        if self.stopping or not self.booted:
            return
        if self.restarting is not None and not self.restarting.done():
            self.reload_again = True
            return
        self.restarting = self.spawn_task(self.rolling_restart())

    def handle_add_worker(self) -> None:
        """SIGTTIN: one worker more."""
        if self.stopping or not self.booted:
            return
        used = {w.slot for w in self.workers if w.drain_deadline is None} | set(self.respawns)
        slot = next(slot for slot in range(len(used) + 1) if slot not in used)
        try:
            self.spawn(slot, "scale")
        except BindError as exc:
            logger.error("SIGTTIN: %s", exc)
            return
        self.target_count += 1
        logger.info("SIGTTIN: one more worker, slot %d (%d in all)", slot, self.target_count)

    def handle_remove_worker(self) -> None:
        """SIGTTOU: one worker fewer (never fewer than one)."""
        if self.stopping or not self.booted:
            return
        serving = [w for w in self.workers if w.drain_deadline is None and w.state == "ready"]
        if len(serving) <= 1:
            logger.info("SIGTTOU: only one worker left: ignored")
            return
        worker = max(serving, key=lambda w: w.slot)
        self.target_count -= 1
        logger.info("SIGTTOU: one worker fewer: draining %s", worker)
        worker.retire(1001)
        # Its socket goes once the worker stops accepting (it holds the last
        # descriptor): from then on the kernel spreads connections over the others.
        assert self.listeners is not None
        self.listeners.release_slot(worker.slot)

    def handle_worker_stop(self, pid: str) -> None:
        """A worker got SIGTERM or SIGINT on its own: replace it, then drain it."""
        worker = self.find(pid)
        if worker is None or self.stopping:
            return  # a stop drains it anyway
        if worker.drain_deadline is not None or worker.replaced_by is not None:
            return  # on its way out already
        logger.info("%s got a stop signal: replacing it", worker)
        self.spawn_task(self.replace(worker, "signal"))

    def handle_worker_draining(self, pid: str) -> None:
        """A worker stopped accepting without being asked to: its slot needs a worker now."""
        worker = self.find(pid)
        if worker is None or self.stopping or worker.drain_deadline is not None:
            return
        if worker.replaced_by is not None:
            return  # replace() drains it, or sees to the slot, once its successor is ready
        logger.warning("%s stopped accepting without being asked to: replacing it", worker)
        worker.replaced_by = self.spawn(worker.slot, "respawn")
        worker.retire(1001)

    def handle_reopen_logs(self) -> None:
        """SIGUSR1: reopen the log file here and in every worker."""
        logs.reopen()
        for worker in self.workers:
            worker.send("reopen_logs")

    # Replacing workers.

    async def rolling_restart(self) -> None:
        """Replace each worker in turn; stop at the first successor that fails."""
        while True:
            self.reload_again = False
            old = [w for w in self.workers if w.state == "ready" and w.drain_deadline is None]
            logger.info("rolling restart of %d worker%s", len(old), "" if len(old) == 1 else "s")
            self.notifier.reloading("rolling restart")
            if self.metrics is not None:
                self.metrics.rolling_restarts.inc()
            completed = True
            for worker in old:
                if worker.state != "ready" or worker.drain_deadline is not None:
                    continue
                if not await self.replace(worker, "reload"):
                    logger.error("rolling restart stopped: the other workers keep running")
                    completed = False
                    break
            if completed:
                logger.info("rolling restart done")
            self.notifier.ready("serving")
            if not self.reload_again:
                return

    def recycle(self, worker: WorkerHandle, cause: str) -> None:
        """A worker reached a ``--worker-max-*`` limit: replace it."""
        if self.stopping or worker.drain_deadline is not None:
            return
        logger.info("%s reached %s: replacing it", worker, cause)
        self.spawn_task(self.replace(worker, cause))

    async def replace(self, old: WorkerHandle, cause: str) -> bool:
        """Start a successor for ``old``; once it is ready, drain ``old``.

        ``cause`` is ``reload``, ``signal`` (``old`` got SIGTERM or SIGINT on
        its own) or the ``--worker-max-*`` limit ``old`` reached. Returns
        whether the successor started.
        """
        assert self.replace_lock is not None
        async with self.replace_lock:
            if self.stopping or old.state == "gone" or old.drain_deadline is not None:
                return True
            new = self.spawn(old.slot, "reload" if cause == "reload" else "recycle")
            old.replaced_by = new
            started = await new.ready
            if self.stopping:
                return started  # everything drains anyway
            if not started:
                old.replaced_by = None
                if old.state == "gone":
                    # It died meanwhile and was not replaced, counting on this one.
                    loop = asyncio.get_running_loop()
                    self.respawns[old.slot] = loop.call_later(0, self._respawn, old.slot)
                elif cause == "signal":
                    # It was told to stop: it does, and its slot closes until
                    # its exit is handled as any other (replaced, with backoff).
                    logger.error("%s drains without a successor", old)
                    old.drain(1001)
                    assert self.listeners is not None
                    self.listeners.release_slot(old.slot)
                return False
            if self.metrics is not None:
                self.metrics.worker_restarts.labels(cause).inc()
            logger.info("%s drains, replaced by %s (%s)", old, new, cause)
            old.retire(self.config.workers.restart_close_code)
            # Once it stopped accepting, new connections go to the new code only.
            try:
                await asyncio.wait_for(
                    asyncio.shield(old.not_accepting), self.config.workers.timeout
                )
            except asyncio.TimeoutError:
                logger.warning("%s did not say it stopped accepting", old)
            return True
