"""Child processes: pinning, starting servers, running clients, and killing them all."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CLIENT_CPU",
    "REPO_ROOT",
    "SERVER_CPU",
    "ClientRun",
    "Launcher",
    "LineReader",
    "ProcessFailed",
    "ServerProcess",
    "run_client",
    "start_server",
    "stop_all",
    "stop_process",
    "tail",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 1
CLIENT_CPU = 0
HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_GRACE = 3.0

# Every child still running, so that nothing outlives the harness.
_live: set[subprocess.Popen[bytes]] = set()


class ProcessFailed(Exception):
    """A server or client exited early, failed, or timed out."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(popen: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reap the process."""
    if popen.poll() is None:
        try:
            popen.send_signal(signal.SIGTERM)
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        except ProcessLookupError:
            pass
    _live.discard(popen)


def stop_all() -> None:
    for popen in list(_live):
        stop_process(popen, grace=1.0)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Launcher:
    """Builds command lines for the children: this interpreter, ``-m module``, pinned."""

    def __init__(self, python: str, pin: bool, log_dir: Path) -> None:
        self.python = python
        self.log_dir = log_dir
        self.taskset = shutil.which("taskset") if pin else None
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if self.taskset is not None and not {SERVER_CPU, CLIENT_CPU} <= cpus:
            self.taskset = None
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._serial = 0

    @property
    def pinned(self) -> bool:
        return self.taskset is not None

    def command(self, module: str, args: list[str], cpu: int) -> list[str]:
        pin = [self.taskset, "-c", str(cpu)] if self.taskset is not None else []
        return [*pin, self.python, "-m", module, *args]

    def log_path(self, stem: str) -> Path:
        self._serial += 1
        return self.log_dir / f"{self._serial:04d}-{stem}.log"

    def spawn(
        self,
        module: str,
        args: list[str],
        *,
        cpu: int,
        log: Path,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m module args`` pinned to ``cpu``.

        stderr, and stdout unless ``stdout`` is given, go to the file ``log``.
        """
        with log.open("wb") as log_file:
            popen = subprocess.Popen(
                self.command(module, args, cpu),
                cwd=REPO_ROOT,
                env=self.env,
                stdin=stdin,
                stdout=stdout if stdout is not None else log_file,
                stderr=log_file,
                # Ctrl-C reaches only the harness, which then stops its children in order.
                start_new_session=True,
            )
        _live.add(popen)
        return popen


@dataclass
class ServerProcess:
    """A running echo server."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path
    tls: bool

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{self.port}/"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def probe(self) -> None:
        """Connect once; over TLS, complete the TLS handshake too.

        A bare TCP connection to a TLS server shows up as a failed TLS handshake in
        some servers' logs, so the probe does the handshake.
        """
        with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
            if self.tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                with context.wrap_socket(sock, server_hostname="localhost"):
                    pass

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll until the port accepts connections, or fail if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} server exited with status {self.popen.returncode}:\n"
                    f"{tail(self.log)}"
                )
            try:
                self.probe()
            except OSError:
                if time.monotonic() > deadline:
                    raise ProcessFailed(
                        f"{self.name} server not listening after {timeout}s"
                    ) from None
                time.sleep(0.02)
            else:
                return

    def stop(self) -> None:
        stop_process(self.popen)


def start_server(
    launcher: Launcher,
    name: str,
    *,
    process: str | None = None,
    loop: str,
    tls: tuple[Path, Path] | None,
    compression: bool,
) -> ServerProcess:
    """Start ``bench.servers.<name>_echo`` pinned to the server core (not yet waited for).

    ``process`` names the process in logs and messages (default: ``name``), so that
    two processes of the same server can be told apart.
    """
    process = process or name
    port = free_port()
    args = ["--port", str(port), "--loop", loop]
    if tls is not None:
        args += ["--tls", str(tls[0]), str(tls[1])]
    if compression:
        args.append("--compression")
    log = launcher.log_path(f"server-{process}-{loop}")
    popen = launcher.spawn(f"bench.servers.{name}_echo", args, cpu=SERVER_CPU, log=log)
    return ServerProcess(process, port, popen, log, tls is not None)


class LineReader:
    """Reads lines from a child's stdout with a deadline, without blocking forever."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.buffer = bytearray()
        self.eof = False

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline, or ``None`` at end of file.

        Raises:
            TimeoutError: If no complete line arrives within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer and not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no output within {timeout:.0f}s")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self.buffer += chunk
                else:
                    self.eof = True
        if not self.buffer:
            return None
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer[:] = rest
        return line.decode(errors="replace")

    def read_json(self, timeout: float) -> dict[str, Any] | None:
        """The next line that holds a JSON object (other lines are ignored)."""
        while True:
            line = self.readline(timeout)
            if line is None:
                return None
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value


@dataclass
class ClientRun:
    """A finished client: its result line, or what went wrong."""

    result: dict[str, Any] | None = None
    error: str | None = None


def log_excerpt(path: Path) -> str:
    text = tail(path, 6).strip()
    return text or "(no output)"


def run_client(
    launcher: Launcher,
    module: str,
    args: list[str],
    *,
    timeout: float,
    on_window_start: Callable[[int], None] | None = None,
    on_window_end: Callable[[int], None] | None = None,
) -> ClientRun:
    """Run a load client pinned to the client core; collect its JSON result.

    ``on_window_start(pid)`` and ``on_window_end(pid)`` are called when the client
    announces its measuring window, so that CPU times can be sampled then.
    """
    log = launcher.log_path(f"client-{module.rsplit('.', 1)[-1]}")
    popen = launcher.spawn(module, args, cpu=CLIENT_CPU, log=log, stdout=subprocess.PIPE)
    run = ClientRun()
    try:
        assert popen.stdout is not None
        reader = LineReader(popen.stdout)
        deadline = time.monotonic() + timeout
        while True:
            message = reader.read_json(max(deadline - time.monotonic(), 0.001))
            if message is None:
                break
            event = message.get("event")
            if event == "window-start" and on_window_start is not None:
                on_window_start(popen.pid)
            elif event == "window-end" and on_window_end is not None:
                on_window_end(popen.pid)
            elif event is None:
                run.result = message
        status = popen.wait(max(deadline - time.monotonic(), 0.001))
        if status != 0:
            run.result = None
            run.error = f"client exited with status {status}: {log_excerpt(log)}"
        elif run.result is None:
            run.error = f"client printed no result: {log_excerpt(log)}"
    except (TimeoutError, subprocess.TimeoutExpired):
        run.error = f"client timed out after {timeout:.0f}s: {log_excerpt(log)}"
    finally:
        stop_process(popen)
        if popen.stdout is not None:
            popen.stdout.close()
    if run.error is None:
        log.unlink(missing_ok=True)
    return run
