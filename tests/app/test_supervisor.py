"""``portside serve`` as a real process: workers, signals, drains, restarts, failures.

Each test starts the supervisor with ``python -m portside serve`` on a free port
and waits for what it logs; clients are real WebSocket connections.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import os
import signal
import socket
import textwrap
import time
from pathlib import Path

import pytest

import portside
from tests.app.helpers import (
    ECHO_APP,
    ServeProcess,
    eventually,
    greeting,
    read,
    serve_env,
    serving,
    start_serve,
    write_module,
)
from tests.programs import listening_sockets, send_raw

pytestmark = pytest.mark.slow


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "echoapp", ECHO_APP)
    return tmp_path


class Pinger:
    """A client that keeps sending numbered messages and checks every echo."""

    def __init__(self, ws: portside.ClientConnection, pid: int) -> None:
        self.ws = ws
        self.pid = pid
        self.sent = 0
        self.echoed = 0
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def echoed_at_least(self, count: int) -> None:
        """Wait until ``count`` echoes arrived."""
        if self.echoed < count:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await future

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        ws = self.ws
        try:
            while True:
                await ws.send(f"message {self.sent}")
                self.sent += 1
                echo = await ws.recv()
                if echo != f"message {self.echoed}":
                    self.error = f"expected message {self.echoed}, got {echo!r}"
                    return
                self.echoed += 1
                for waiter in [w for w in self._waiters if w[0] <= self.echoed]:
                    self._waiters.remove(waiter)
                    waiter[1].set_result(None)
                await asyncio.sleep(0.01)  # pace: about 100 messages per second per client
        except portside.ConnectionClosed:
            pass


async def tcp_connect(port: int) -> socket.socket:
    """A TCP connection to the server's port, established (the kernel accepted it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


class Churn:
    """New connections without a pause, a few at a time: each a handshake, the
    greeting, an echo and a close.

    A handshake that fails, or does not complete within ``open_timeout`` (a
    connection left in an accept queue nobody serves), is a failure; a
    connection closed with 1001 or 1012 after its handshake was drained, which
    is the documented behaviour of a worker that goes.
    """

    def __init__(self, server: ServeProcess, lanes: int = 4, open_timeout: float = 3.0) -> None:
        self.url = server.url()
        self.lanes = lanes
        self.open_timeout = open_timeout
        self.served: list[int] = []  # the pid of each connection that completed
        self.opened_at: list[float] = []  # when each of them started connecting
        self.failures: list[str] = []
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def served_since(self, since: float) -> set[int]:
        """The workers that served the connections opened since ``since`` (loop time)."""
        return {pid for at, pid in zip(self.opened_at, self.served, strict=True) if at > since}

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._lane()) for _ in range(self.lanes)]

    async def _lane(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            opened_at = loop.time()
            try:
                ws = await portside.connect(
                    self.url, compression=None, open_timeout=self.open_timeout
                )
            except Exception as exc:
                self.failures.append(f"handshake: {exc!r}")
                continue
            try:
                _, pid = await greeting(ws)
                await ws.send("ping")
                assert await ws.recv() == "ping"
                await ws.close()
            except portside.ConnectionClosed:
                if ws.close_code not in (1001, 1012):
                    self.failures.append(f"closed with {ws.close_code}")
                continue
            self.opened_at.append(opened_at)
            self.served.append(pid)
            for waiter in [w for w in self._waiters if w[0] <= len(self.served)]:
                self._waiters.remove(waiter)
                waiter[1].set_result(None)

    async def more(self, count: int) -> None:
        """Wait until ``count`` more connections completed."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((len(self.served) + count, future))
        await future

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self._tasks)


async def test_sigterm_drains_four_workers_with_1001_and_exits_0(app_dir: Path) -> None:
    graceful_timeout = 10.0
    async with serving(
        "echoapp:app", "--workers", "4", "--graceful-timeout", str(graceful_timeout), cwd=app_dir
    ) as server:
        clients = await asyncio.gather(
            *(portside.connect(server.url(), compression=None) for _ in range(400))
        )
        pingers = [Pinger(ws, (await greeting(ws))[1]) for ws in clients]
        by_worker = collections.Counter(pinger.pid for pinger in pingers)
        assert set(by_worker) == set(server.pids)
        # SO_REUSEPORT spreads the connections: every worker holds >= 15 %.
        assert min(by_worker.values()) >= 60, by_worker
        for pinger in pingers:
            pinger.start()
        # Let every client get a few echoes back.
        await asyncio.gather(*(p.echoed_at_least(3) for p in pingers))
        start = time.monotonic()
        server.signal(signal.SIGTERM)
        status = await server.wait(graceful_timeout + 5)
        elapsed = time.monotonic() - start
        await asyncio.gather(*(p.task for p in pingers if p.task is not None))
        for ws in clients:
            await ws.wait_closed()
        assert [p.error for p in pingers if p.error] == []
        codes = collections.Counter(ws.close_code for ws in clients)
        assert codes == {1001: 400}
        assert status == 0
        assert elapsed < graceful_timeout
        assert "stopping: draining 4 workers" in server.text()


async def test_sighup_under_load_restarts_with_new_code_and_no_failed_handshake(
    app_dir: Path,
) -> None:
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        old = await portside.connect(server.url(), compression=None)
        assert (await greeting(old))[0] == "v1"
        results: list[tuple[float, str]] = []
        failures: list[str] = []
        stop = asyncio.Event()

        restarted = []

        async def one() -> None:
            # As a client does: a Close with 1012 (service restart) means "come
            # back"; a refused or failed handshake is a failure.
            for _ in range(3):
                started = time.monotonic()
                try:
                    ws = await portside.connect(server.url(), compression=None)
                except Exception as exc:
                    failures.append(f"handshake: {exc!r}")
                    return
                try:
                    version, _ = await greeting(ws)
                    await ws.send("hello")
                    assert await ws.recv() == "hello"
                    results.append((started, version))
                    await ws.close()
                    return
                except portside.ConnectionClosed:
                    if ws.close_code != 1012:
                        failures.append(f"closed with {ws.close_code}")
                        return
                    restarted.append(ws)
            failures.append("three restarts in a row")

        async def load() -> None:
            # 200 new connections per second, each a handshake, a message, a close:
            # as many started as are due by now, so that the rate holds when this
            # process gets the CPU late (CI runs two jobs at once on 2 cores).
            tasks: list[asyncio.Future[None]] = []
            begin = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - begin) * 200) + 1
                while len(tasks) < due:
                    tasks.append(asyncio.ensure_future(one()))
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)

        loading = asyncio.ensure_future(load())
        await asyncio.sleep(1)
        write_module(app_dir, "echoapp", ECHO_APP.replace('"v1"', '"v2"'))
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        await server.wait_line("rolling restart done", start=mark)
        done = time.monotonic()
        await asyncio.sleep(max(0.0, 5 - (done - results[0][0])) + 0.5)
        stop.set()
        await loading
        assert failures == []
        span = results[-1][0] - results[0][0]
        assert span >= 5
        assert len(results) / span >= 100
        # The old connection was closed with 1012 (service restart)...
        await old.wait_closed()
        assert old.close_code == 1012
        # ...and the new code answers afterwards.
        # "rolling restart done" comes once the old workers stopped accepting.
        after = [version for when, version in results if when > done]
        assert after and set(after) == {"v2"}
        assert {version for _, version in results} == {"v1", "v2"}


def process_started(pid: int) -> float:
    """When process ``pid`` started, on the ``CLOCK_BOOTTIME`` clock (to 10 ms)."""
    # proc(5): field 22 of /proc/PID/stat, in clock ticks since boot; fields
    # 3 onwards follow the command's name, in parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


async def test_kill_9_of_a_worker_is_replaced_within_a_second_and_spares_the_others(
    app_dir: Path,
) -> None:
    # Timed: without coverage's instrumentation, which doubles a worker's start-up.
    env = serve_env(coverage=False)
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir, env=env) as server:
        clients = [await portside.connect(server.url(), compression=None) for _ in range(20)]
        pingers = [Pinger(ws, (await greeting(ws))[1]) for ws in clients]
        victim = pingers[0].pid
        others = [p for p in pingers if p.pid != victim]
        assert others
        for pinger in others:
            pinger.start()
        mark = len(server.lines)
        killed = time.clock_gettime(time.CLOCK_BOOTTIME)
        os.kill(victim, signal.SIGKILL)
        await server.wait_line(rf"worker {victim} \(slot \d\) killed by SIGKILL", start=mark)
        match = await server.wait_line(r"worker (\d+) \(slot \d\) ready", start=mark)
        replaced = time.clock_gettime(time.CLOCK_BOOTTIME) - killed
        newcomer = int(match.group(1))
        # Replaced at once: its successor was started within 0.5 s (no backoff
        # for a first death). Then the successor's start-up, a new interpreter
        # and the application's import, takes about 0.3 s on a quiet machine
        # (1 s in all, issue 14's criterion), but as long as the CPU it waits
        # for on a loaded one: the whole is only bounded loosely.
        spawned = process_started(newcomer) - killed
        assert spawned < 0.5, f"successor started {spawned:.2f} s after the kill"
        assert replaced < 10, f"successor ready {replaced:.2f} s after the kill"
        # Clients on the other worker saw nothing: still echoing, in order.
        await asyncio.gather(*(p.echoed_at_least(p.echoed + 5) for p in others))
        assert all(p.error is None and not p.ws.closed for p in others)
        # The new worker serves.
        seen = set()
        while newcomer not in seen:
            async with portside.connect(server.url(), compression=None) as ws:
                seen.add((await greeting(ws))[1])
        for ws in clients:
            await ws.close()


async def test_a_worker_sent_sigterm_alone_is_replaced_and_no_connection_waits(
    app_dir: Path,
) -> None:
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        held = await portside.connect(server.url(), compression=None)
        _, victim = await greeting(held)
        (other,) = set(server.pids) - {victim}
        churn = Churn(server)
        churn.start()
        await churn.more(20)
        mark = len(server.lines)
        # An operator, a script or a stray signal: SIGTERM to one worker only.
        os.kill(victim, signal.SIGTERM)
        await server.wait_line(rf"worker {victim} \(slot \d\) got a stop signal", start=mark)
        match = await server.wait_line(
            rf"worker {victim} \(slot \d\) drains, replaced by worker (\d+)", start=mark
        )
        newcomer = int(match.group(1))
        await server.wait_line(rf"worker {victim} \(slot \d\) drained and exited", start=mark)
        exited = asyncio.get_running_loop().time()
        await churn.more(100)
        await churn.stop()
        # During the replacement and after it, every handshake completed in time...
        assert churn.failures == []
        # ...and both slots serve: the victim's by its successor. (A connection
        # opened before the victim went may complete after it went.)
        assert churn.served_since(exited) == {other, newcomer}
        await held.wait_closed()
        assert held.close_code == 1012
        assert "without being asked" not in server.text()


async def test_a_signal_to_the_process_group_drains_every_worker_and_replaces_none(
    app_dir: Path,
) -> None:
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        clients = [await portside.connect(server.url(), compression=None) for _ in range(10)]
        for ws in clients:
            await greeting(ws)
        # Ctrl-C in a terminal: SIGINT to the supervisor and its workers at once.
        os.killpg(server.pid, signal.SIGINT)
        assert await server.wait(15) == 0
        for ws in clients:
            await ws.wait_closed()
            assert ws.close_code == 1001
        assert "stopping: draining 2 workers" in server.text()
        assert "replac" not in server.text()
        assert " ready" not in server.text()


async def test_a_slot_waiting_for_its_next_worker_has_no_socket(app_dir: Path) -> None:
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        assert listening_sockets(server.port) == 2
        first, victim = server.pids
        mark = len(server.lines)
        os.kill(victim, signal.SIGKILL)
        # The first loss of a slot: its successor starts at once and takes over
        # the socket with the connections queued there.
        match = await server.wait_line(r"worker (\d+) \(slot 1\) ready", start=mark)
        assert "replacing it in" not in server.text()
        assert listening_sockets(server.port) == 2
        mark = len(server.lines)
        os.kill(int(match.group(1)), signal.SIGKILL)
        # The second, within a minute: backoff, and no socket meanwhile, so that
        # the kernel sends every connection to the other worker.
        await server.wait_line(r"replacing it in 0\.5 s \(its socket closed", start=mark)
        # TCP connections made at once, while one socket listens (still so after
        # them): the kernel queued them all on the other worker's socket, however
        # long their WebSocket handshakes take on a loaded machine.
        connected = [await tcp_connect(server.port) for _ in range(5)]
        try:
            assert listening_sockets(server.port) == 1
            for sock in connected:
                async with portside.connect(server.url(), sock=sock, compression=None) as ws:
                    assert (await greeting(ws))[1] == first
        finally:
            for sock in connected:
                sock.close()
        await server.wait_line(r"worker (\d+) \(slot 1\) ready", start=mark)
        assert listening_sockets(server.port) == 2


async def test_a_worker_that_exits_0_on_its_own_is_replaced_not_counted_as_a_crash(
    tmp_path: Path,
) -> None:
    write_module(
        tmp_path,
        "leaving",
        """
        import os
        import portside

        async def handler(ws):
            await ws.send(str(os.getpid()))
            if ws.path == "/leave":
                os._exit(0)
            async for message in ws:
                await ws.send(message)
        """,
    )
    async with serving("leaving:handler", "--metrics-path", "/metrics", cwd=tmp_path) as server:
        (first,) = server.pids
        mark = len(server.lines)
        ws = await portside.connect(server.url("/leave"))
        assert int(await ws.recv()) == first
        await ws.wait_closed()
        await server.wait_line(
            rf"WARNING .*worker {first} \(slot 0\) exited with status 0 without being asked to",
            start=mark,
        )
        match = await server.wait_line(r"worker (\d+) \(slot 0\) ready", start=mark)
        async with portside.connect(server.url()) as fresh:
            assert int(await fresh.recv()) == int(match.group(1))
        samples = await scrape(server)
        assert samples[("portside_worker_restarts_total", (("cause", "exited"),))] == 1
        assert " ERROR " not in server.text()


async def test_a_worker_sent_sigterm_whose_successor_cannot_start(app_dir: Path) -> None:
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        victim = server.pids[1]
        write_module(app_dir, "echoapp", "raise ImportError('half-deployed')\n")
        mark = len(server.lines)
        os.kill(victim, signal.SIGTERM)
        await server.wait_line("failed to start: importing 'echoapp' failed", start=mark)
        # It was told to stop: it drains anyway, and its slot's socket closes.
        await server.wait_line(rf"worker {victim} \(slot 1\) drains without a successor")
        await server.wait_line(rf"worker {victim} \(slot 1\) drained and exited", start=mark)
        # Its exit is then handled as any other: the replacement cannot start
        # either, and the server stops with its error, as after a crash.
        assert await server.wait(20) == 2
        assert "ERROR portside.app: importing 'echoapp' failed" in server.text()


async def test_an_import_error_is_one_line_and_status_2(tmp_path: Path) -> None:
    server = await start_serve("nosuchmodule:app", "--workers", "2", cwd=tmp_path)
    status = await server.wait(20)
    assert status == 2
    assert len(server.lines) == 1, server.lines
    assert server.lines[0].startswith("portside: error: cannot import 'nosuchmodule'")


async def test_a_syntax_error_is_one_line_with_where(tmp_path: Path) -> None:
    write_module(tmp_path, "broken", "def handler(ws)\n    pass\n")
    server = await start_serve("broken:handler", cwd=tmp_path)
    assert await server.wait(20) == 2
    assert len(server.lines) == 1, server.lines
    assert "syntax error at" in server.lines[0]
    assert "broken.py:1" in server.lines[0]


async def test_a_traceback_with_log_level_debug(tmp_path: Path) -> None:
    write_module(tmp_path, "raises", "raise RuntimeError('at import')\n")
    server = await start_serve("raises:handler", "--log-level", "debug", cwd=tmp_path)
    assert await server.wait(20) == 2
    assert "Traceback" in server.text()
    assert "portside: error: importing 'raises' failed: RuntimeError: at import" in server.text()


async def test_a_startup_hook_that_raises_stops_with_status_3(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "hooked",
        """
        import portside

        async def handler(ws):
            pass

        app = portside.App(handler)

        @app.on_startup
        async def connect_database():
            raise ConnectionRefusedError("database down")
        """,
    )
    server = await start_serve("hooked:app", "--workers", "2", cwd=tmp_path)
    assert await server.wait(20) == 3
    assert len(server.lines) == 1, server.lines
    assert (
        "startup hook connect_database failed: ConnectionRefusedError: database down"
        in (server.lines[0])
    )


async def test_five_crashes_within_a_minute_stop_the_server(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "crashy",
        """
        import asyncio
        import os
        import portside

        async def handler(ws):
            pass

        app = portside.App(handler)

        @app.on_startup
        async def crash_soon():
            asyncio.get_running_loop().call_later(0.3, os._exit, 70)
        """,
    )
    server = await start_serve(
        "crashy:app", "--workers", "2", "--bind", "127.0.0.1:0", cwd=tmp_path
    )
    await server.ready()
    status = await server.wait(25)
    assert status == 1
    assert "5 worker crashes within 60 s (last: worker" in server.text()
    assert server.text().count("ERROR portside.app: worker") >= 4


async def test_a_blocked_worker_is_replaced_after_timeout(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "blocking",
        """
        import os
        import time
        import portside

        async def handler(ws):
            await ws.send(str(os.getpid()))
            if ws.path == "/block":
                time.sleep(60)
            async for message in ws:
                await ws.send(message)
        """,
    )
    async with serving("blocking:handler", "--timeout", "2", cwd=tmp_path) as server:
        ws = await portside.connect(server.url("/block"))
        blocked = int(await ws.recv())
        start = time.monotonic()
        await server.wait_line(
            rf"worker {blocked} \(slot 0\): event loop blocked for more than 2 s", timeout=10
        )
        waited = time.monotonic() - start
        assert 1.5 < waited < 5
        match = await server.wait_line(r"worker (\d+) \(slot 0\) ready", timeout=10)
        assert int(match.group(1)) != blocked
        async with portside.connect(server.url()) as fresh:
            assert int(await fresh.recv()) == int(match.group(1))
            await fresh.send("alive")
            assert await fresh.recv() == "alive"
        await ws.wait_closed()
        assert ws.close_code == 1006


async def scrape(server: ServeProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    data = await send_raw("127.0.0.1", server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Type: text/plain; version=" in head
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


async def test_metrics_total_over_both_workers(app_dir: Path) -> None:
    async with serving(
        "echoapp:app", "--workers", "2", "--metrics-path", "/metrics", cwd=app_dir
    ) as server:
        count = 40
        pids: collections.Counter[int] = collections.Counter()
        for index in range(count):
            async with portside.connect(server.url(), compression=None) as ws:
                pids[(await greeting(ws))[1]] += 1
                await ws.send(f"m{index}")
                assert await ws.recv() == f"m{index}"
        assert len(pids) == 2  # both workers served some
        # Whichever worker a scrape reaches (the kernel spreads them), the same totals.
        for _ in range(10):
            samples = await scrape(server)
            assert samples[("portside_connections_total", ())] == count
            assert samples[("portside_close_codes_received_total", (("code", "1000"),))] == count
            assert samples[("portside_close_codes_sent_total", (("code", "1000"),))] == count
            # Each client sent one message; the app sent a greeting and the echo.
            assert samples[("portside_messages_total", (("direction", "in"),))] == count
            assert samples[("portside_messages_total", (("direction", "out"),))] == 2 * count
            assert samples[("portside_bytes_total", (("direction", "in"),))] > 0
            assert samples[("portside_workers", ())] == 2
            assert samples[("portside_connections_open", ())] == 0
        # A rolling restart: the restarted workers' counters stay in the totals.
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        for _ in range(2):
            mark = 1 + server.lines.index(
                (await server.wait_line(r"drained and exited", start=mark)).string, mark
            )
        samples = await scrape(server)
        assert samples[("portside_connections_total", ())] == count
        assert samples[("portside_rolling_restarts_total", ())] == 1
        assert samples[("portside_worker_restarts_total", (("cause", "reload"),))] == 2
        assert samples[("portside_drains_total", (("reason", "restart"),))] == 2
        assert samples[("portside_workers", ())] == 2


async def test_sigint_twice_stops_now(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "stubborn",
        """
        import asyncio
        import portside

        async def handler(ws):
            await ws.send("in")
            await asyncio.Event().wait()  # ignores the Close: returns only when cancelled
        """,
    )
    async with serving("stubborn:handler", "--graceful-timeout", "60", cwd=tmp_path) as server:
        ws = await portside.connect(server.url())
        assert await ws.recv() == "in"
        server.signal(signal.SIGINT)
        await server.wait_line("stopping: draining 1 worker")
        await ws.wait_closed()  # the client answered the Close; the handler runs on
        assert ws.close_code == 1001
        start = time.monotonic()
        server.signal(signal.SIGINT)
        assert await server.wait(10) == 0
        assert time.monotonic() - start < 5


async def test_sigttin_and_sigttou_add_and_remove_a_worker(app_dir: Path) -> None:
    async with serving("echoapp:app", cwd=app_dir) as server:
        mark = len(server.lines)
        server.signal(signal.SIGTTIN)
        match = await server.wait_line(r"worker (\d+) \(slot 1\) ready", start=mark)
        added = int(match.group(1))
        seen = set()
        while added not in seen:
            async with portside.connect(server.url(), compression=None) as ws:
                seen.add((await greeting(ws))[1])
        assert listening_sockets(server.port) == 2
        mark = len(server.lines)
        server.signal(signal.SIGTTOU)
        await server.wait_line(rf"worker {added} \(slot 1\) drained and exited", start=mark)
        # Its slot's socket is gone with it: no connection waits there.
        assert listening_sockets(server.port) == 1
        # Only one worker is left: a second SIGTTOU is refused.
        server.signal(signal.SIGTTOU)
        await server.wait_line("only one worker left", start=mark)


async def test_a_rolling_restart_that_fails_keeps_the_old_workers(app_dir: Path) -> None:
    async with serving("echoapp:app", "--workers", "2", cwd=app_dir) as server:
        write_module(app_dir, "echoapp", "raise ImportError('half-deployed')\n")
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        await server.wait_line("failed to start: importing 'echoapp' failed", start=mark)
        await server.wait_line("rolling restart stopped", start=mark)
        for _ in range(4):
            async with portside.connect(server.url(), compression=None) as ws:
                version, pid = await greeting(ws)
                assert version == "v1"
                assert pid in server.pids


async def test_a_worker_added_by_sigttin_that_fails_to_start_leaves_no_socket(
    app_dir: Path,
) -> None:
    async with serving("echoapp:app", cwd=app_dir) as server:
        write_module(app_dir, "echoapp", "raise ImportError('half-deployed')\n")
        mark = len(server.lines)
        server.signal(signal.SIGTTIN)
        await server.wait_line(r"\(slot 1\) failed to start: importing 'echoapp'", start=mark)
        assert listening_sockets(server.port) == 1
        write_module(app_dir, "echoapp", ECHO_APP)
        mark = len(server.lines)
        server.signal(signal.SIGTTIN)
        await server.wait_line(r"SIGTTIN: one more worker, slot 1 \(2 in all\)", start=mark)
        await server.wait_line(r"\(slot 1\) ready", start=mark)
        assert listening_sockets(server.port) == 2


async def test_worker_max_connections_served_recycles_by_draining(app_dir: Path) -> None:
    async with serving(
        "echoapp:app",
        "--worker-max-connections-served",
        "3",
        "--worker-max-connections-served-jitter",
        "0",
        cwd=app_dir,
    ) as server:
        (first,) = server.pids
        held = await portside.connect(server.url(), compression=None)
        assert (await greeting(held))[1] == first
        for _ in range(2):
            async with portside.connect(server.url(), compression=None) as ws:
                await greeting(ws)
        await server.wait_line(rf"worker {first} \(slot 0\) reached max_connections_served")
        match = await server.wait_line(
            r"worker \d+ \(slot 0\) drains, replaced by worker (\d+) \(slot 0\) "
            r"\(max_connections_served\)"
        )
        # The held connection is drained with the restart code; newcomers go to the new worker.
        await held.wait_closed()
        assert held.close_code == 1012
        async with portside.connect(server.url(), compression=None) as ws:
            assert (await greeting(ws))[1] == int(match.group(1))


async def test_reload_on_a_source_change(app_dir: Path) -> None:
    # Python caches bytecode here, as it does for users.
    env = serve_env()
    del env["PYTHONDONTWRITEBYTECODE"]
    source = app_dir / "echoapp.py"
    async with serving(
        "echoapp:app", "--reload", "--app-dir", str(app_dir), cwd=app_dir, env=env
    ) as server:
        await server.wait_line("--reload: (watching|polling)")
        assert Path(importlib.util.cache_from_source(str(source))).exists()
        # The worst case for that cache, which trusts a source file of the same
        # size and the same modification time in whole seconds: "v1" becomes
        # "v2" within the second of the first version.
        before = source.stat().st_mtime_ns
        second, fraction = divmod(before, 10**9)
        edited = app_dir / "echoapp.new"
        edited.write_text(textwrap.dedent(ECHO_APP.replace('"v1"', '"v2"')))
        os.utime(edited, ns=(before, second * 10**9 + (fraction + 1) % 10**9))
        mark = len(server.lines)
        os.replace(edited, source)
        await server.wait_line("changed: .*echoapp.py: reloading", start=mark)
        await server.wait_line("rolling restart done", start=mark)
        async with portside.connect(server.url(), compression=None) as ws:
            assert (await greeting(ws))[0] == "v2"


async def test_sigusr1_reopens_the_log_file(app_dir: Path) -> None:
    log = app_dir / "portside.log"
    server = await start_serve(
        "echoapp:app", "--bind", "127.0.0.1:0", "--log-file", str(log), "--access-log", cwd=app_dir
    )
    try:
        text = await eventually(lambda: "serving" in read(log))
        port = int(read(log).split("127.0.0.1:")[1].split()[0])
        log.rename(app_dir / "portside.log.1")
        server.signal(signal.SIGUSR1)
        await eventually(log.exists)
        async with portside.connect(f"ws://127.0.0.1:{port}/after", compression=None) as ws:
            await greeting(ws)
        await eventually(lambda: "path=/after" in read(log))
        assert "path=/after" not in read(app_dir / "portside.log.1")
        del text
    finally:
        await server.close()
