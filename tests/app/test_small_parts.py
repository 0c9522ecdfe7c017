"""The small parts of the application server: sd_notify, the worker channel, reload
polling, logs, loading MODULE:ATTR, App, listeners."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

import portside
from portside.app import logs, reload
from portside.app.app import App, as_app, call_hook
from portside.app.channel import Channel
from portside.app.config import Bind, Listen, Target
from portside.app.listeners import BindError, Listeners, systemd_sockets
from portside.app.loading import LoadError, load
from portside.app.sdnotify import Notifier
from portside.app.worker import beat_interval, rss_mib

# sd_notify.


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        environ = {"NOTIFY_SOCKET": path}
        notifier = Notifier(environ)
        assert environ == {}  # children do not inherit it
        assert notifier.enabled
        assert notifier.ready("serving")
        assert receiver.recv(1000) == b"READY=1\nSTATUS=serving"
        assert notifier.reloading("restarting")
        lines = receiver.recv(1000).split(b"\n")
        assert lines[0] == b"RELOADING=1" and lines[1].startswith(b"MONOTONIC_USEC=")
        assert notifier.stopping("bye")
        assert receiver.recv(1000) == b"STOPPING=1\nSTATUS=bye"
        assert notifier.status("fine")
        assert receiver.recv(1000) == b"STATUS=fine"


def test_sd_notify_abstract_missing_and_wrong() -> None:
    abstract = "@portside-test-" + str(os.getpid())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + abstract[1:])
        assert Notifier({"NOTIFY_SOCKET": abstract}).ready("x")
        assert receiver.recv(100) == b"READY=1\nSTATUS=x"
    assert not Notifier({}).enabled
    assert not Notifier({}).ready("x")
    assert not Notifier({"NOTIFY_SOCKET": "relative"}).enabled
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/socket"}).ready("x")


# The channel between supervisor and worker.


async def test_channel_messages_both_ways_and_eof() -> None:
    left, right = socket.socketpair()
    loop = asyncio.get_running_loop()
    received: list[dict[str, Any]] = []
    gone = asyncio.Event()
    got = asyncio.Event()

    def on_message(message: dict[str, Any]) -> None:
        received.append(message)
        if len(received) == 3:
            got.set()

    a = Channel(left, on_message, gone.set)
    b = Channel(right, lambda m: None, lambda: None)
    a.start(loop)
    b.start(loop)
    b.send("ready")
    b.send("fatal", status=2, message="x" * 200_000)  # more than a socket buffer
    b.send("beat")
    await got.wait()
    assert [m["event"] for m in received] == ["ready", "fatal", "beat"]
    assert len(received[1]["message"]) == 200_000
    b.close()
    b.close()
    b.send("ignored")
    await gone.wait()
    a.close()


# --reload's polling.


async def test_reload_polling_reports_changed_files(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "skip.py").write_text("")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    (tmp_path / "venv" / "lib.py").write_text("")
    before = reload.snapshot([str(tmp_path)])
    assert set(before) == {str(tmp_path / "app.py")}
    changes: asyncio.Queue[list[str]] = asyncio.Queue()
    task = asyncio.ensure_future(
        reload.poll([str(tmp_path)], changes.put_nowait, 0.02, before=before)
    )
    (tmp_path / "new.py").write_text("y = 2\n")
    assert await asyncio.wait_for(changes.get(), 5) == [str(tmp_path / "new.py")]
    task.cancel()


def test_reload_forgets_the_bytecode_of_changed_files(tmp_path: Path) -> None:
    import importlib.util
    import py_compile

    source = tmp_path / "app.py"
    source.write_text("x = 1\n")
    other = tmp_path / "other.py"
    other.write_text("y = 1\n")
    for path in (source, other):
        py_compile.compile(str(path))
    cached = [Path(importlib.util.cache_from_source(str(path))) for path in (source, other)]
    assert all(path.exists() for path in cached)
    reload.forget_bytecode([str(source), str(tmp_path / "gone.py"), str(tmp_path / "data.txt")])
    assert not cached[0].exists()
    assert cached[1].exists()


async def test_reload_polls_without_watchfiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "watchfiles" else real(n, *a)
    )
    polled = []

    async def fake_poll(directories: list[str], on_change: Any, before: Any) -> None:
        polled.append(directories)

    monkeypatch.setattr(reload, "poll", fake_poll)
    await reload.watch([str(tmp_path)], lambda paths: None)
    assert polled == [[str(tmp_path)]]


# Logs.


def test_logs_text_json_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log"
    root = logging.getLogger()
    level = root.level
    try:
        logs.configure("info", "json", str(path))
        logging.getLogger("portside.test").info("hello %s", "there", extra={"peer": "p"})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("portside.test").exception("failed")
        path.rename(tmp_path / "log.1")
        logs.reopen()
        logging.getLogger("portside.test").warning("after")
        first = [json.loads(line) for line in (tmp_path / "log.1").read_text().splitlines()]
        assert first[0]["message"] == "hello there"
        assert first[0]["peer"] == "p"
        assert first[0]["level"] == "info"
        assert first[0]["time"].endswith("Z")
        assert "ValueError: boom" in first[1]["exception"]
        assert json.loads(path.read_text())["message"] == "after"
        logs.configure("debug", "text", None)
        logs.reopen()  # nothing to reopen on stderr
    finally:
        logs.configure("warning", "text", None)
        root.removeHandler(logs._handler)  # type: ignore[arg-type]
        logs._handler = None
        root.setLevel(level)


def test_text_format() -> None:
    record = logging.LogRecord("portside.app", logging.INFO, __file__, 1, "started", (), None)
    line = logs.TextFormatter().format(record)
    assert line.endswith(f"[{os.getpid()}] INFO portside.app: started")
    assert line[:20].count("-") == 2 and line[19] == "."


# Loading MODULE:ATTR.


def target(tmp_path: Path, app: str, factory: bool = False) -> Target:
    return Target(app=app, factory=factory, app_dir=str(tmp_path))


def test_load_a_handler_an_app_and_a_factory(tmp_path: Path) -> None:
    (tmp_path / "loadme_ok.py").write_text(
        "import portside\n"
        "async def handler(ws): pass\n"
        "app = portside.App(handler)\n"
        "class Holder:\n    app = app\n"
        "def make():\n    return app\n"
        "def broken():\n    raise RuntimeError('no config')\n"
        "number = 3\n"
    )
    try:
        assert load(target(tmp_path, "loadme_ok:handler")).handler.__name__ == "handler"
        assert isinstance(load(target(tmp_path, "loadme_ok:app")), App)
        assert isinstance(load(target(tmp_path, "loadme_ok:Holder.app")), App)
        assert isinstance(load(target(tmp_path, "loadme_ok:make", factory=True)), App)
        with pytest.raises(LoadError, match="has no attribute 'missing'"):
            load(target(tmp_path, "loadme_ok:missing"))
        with pytest.raises(LoadError, match="calling loadme_ok:broken failed: RuntimeError"):
            load(target(tmp_path, "loadme_ok:broken", factory=True))
        with pytest.raises(LoadError, match="--factory: loadme_ok:number is not callable"):
            load(target(tmp_path, "loadme_ok:number", factory=True))
        with pytest.raises(LoadError, match=r"is a int: expected a handler or a portside\.App"):
            load(target(tmp_path, "loadme_ok:number"))
    finally:
        sys.modules.pop("loadme_ok", None)


def test_load_errors(tmp_path: Path) -> None:
    (tmp_path / "loadme_dep.py").write_text("import nosuchdependency\n")
    try:
        with pytest.raises(LoadError, match="importing 'loadme_dep' failed: ModuleNotFoundError"):
            load(target(tmp_path, "loadme_dep:x"))
        with pytest.raises(LoadError, match=r"cannot import 'nosuchpackage\.sub': no such module"):
            load(target(tmp_path, "nosuchpackage.sub:x"))
    finally:
        sys.modules.pop("loadme_dep", None)


# App.


async def test_app() -> None:
    async def handler(ws: Any) -> None: ...

    calls: list[str] = []

    async def hook() -> None:
        calls.append("hook")

    app = App(handler, on_startup=[hook], on_shutdown=[hook], max_size=10)
    assert app.startup_hooks == [hook] and app.shutdown_hooks == [hook]
    assert app.serve_options == {"max_size": 10}
    await call_hook(hook)

    def plain() -> Any:
        calls.append("plain")

    await call_hook(plain)
    assert calls == ["hook", "plain"]
    assert as_app(app) is app
    assert as_app(handler).handler is handler
    app.add_readiness_check(lambda: True)
    assert app.readiness_checks[0][0] == "<lambda>"
    with pytest.raises(TypeError, match="handler must be"):
        App(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot carry: host, port"):
        App(handler, host="x", port=1)
    with pytest.raises(TypeError, match="process_request must be callable"):
        App(handler, process_request=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a hook must be"):
        app.on_startup(3)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="a readiness check must be callable"):
        app.add_readiness_check(3)  # type: ignore[arg-type]
    assert portside.App is App


# Listeners.


def listen(*binds: str, backlog: int = 16) -> Listen:
    from portside.app.config import parse_bind

    return Listen(
        binds=tuple(parse_bind(b) for b in binds),
        backlog=backlog,
        certfile=None,
        keyfile=None,
        ca_certs=None,
    )


def test_listeners_per_slot_with_reuse_port_and_shared_otherwise(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    listeners = Listeners(listen("127.0.0.1:0", f"unix:{path}"), reuse_port=True)
    listeners.open()
    try:
        slot0 = listeners.for_slot(0)
        slot1 = listeners.for_slot(1)
        tcp0 = [s for s in slot0 if s.family == socket.AF_INET]
        tcp1 = [s for s in slot1 if s.family == socket.AF_INET]
        assert tcp0[0] is not tcp1[0]
        assert tcp0[0].getsockname() == tcp1[0].getsockname()  # port 0: the same port
        unix = [s for s in slot0 if s.family == socket.AF_UNIX]
        assert unix == [s for s in slot1 if s.family == socket.AF_UNIX]
        assert listeners.for_slot(1) == slot1
        assert any(d.startswith("127.0.0.1:") for d in listeners.descriptions)
        assert f"unix:{path}" in listeners.descriptions
        listeners.release_slot(1)
        assert tcp1[0].fileno() == -1
    finally:
        listeners.close()
    assert not os.path.exists(path)


def test_listeners_shared_without_reuse_port_and_both_families() -> None:
    listeners = Listeners(listen("localhost:0"), reuse_port=False)
    listeners.open()
    try:
        assert listeners.for_slot(0) == listeners.for_slot(3)
        ports = {s.getsockname()[1] for s in listeners.shared}
        assert len(ports) == 1
    finally:
        listeners.close()


def test_listeners_errors(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(BindError, match="address already in use"):
            Listeners(listen(f"127.0.0.1:{port}"), reuse_port=False).open()
        with pytest.raises(BindError, match="cannot resolve"):
            Listeners(listen("no.such.host.invalid:1")).open()
        with pytest.raises(BindError, match="not a socket"):
            Listeners(listen("fd://999")).open()
        # A Unix socket someone listens on is not taken over; a stale one is.
        path = str(tmp_path / "busy.sock")
        busy = socket.socket(socket.AF_UNIX)
        busy.bind(path)
        busy.listen()
        with pytest.raises(BindError, match="a server listens there already"):
            Listeners(listen(f"unix:{path}")).open()
        busy.close()
        stale = Listeners(listen(f"unix:{path}"))
        stale.open()
        stale.close()
        with pytest.raises(BindError, match="cannot listen"):
            Listeners(listen(f"unix:{tmp_path}/no/such/dir.sock")).open()
    finally:
        taken.close()


def test_listeners_inherited_and_fd(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    fd = os.dup(sock.fileno())
    sock.close()
    listeners = Listeners(listen(f"fd://{fd}"))
    listeners.open()
    assert listeners.descriptions[0].endswith(f"(fd://{fd})")
    listeners.close()
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(BindError, match="not a listening stream socket"):
        Listeners(listen("127.0.0.1:0"), inherited=[datagram]).open()
    datagram.close()
    unbound = socket.socket()
    with pytest.raises(BindError, match="not a listening stream socket"):
        Listeners(listen("127.0.0.1:0"), inherited=[unbound]).open()
    unbound.close()


def test_systemd_sockets_only_for_this_process() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert systemd_sockets(environ) == []
    assert environ == {}
    assert systemd_sockets({"LISTEN_PID": "x", "LISTEN_FDS": "1"}) == []
    assert systemd_sockets({}) == []
    assert Bind("tcp", "::1", 80).__str__() == "[::1]:80"


def test_worker_helpers() -> None:
    assert beat_interval(30) == 1.0
    assert beat_interval(2) == 0.5
    assert 1 < rss_mib() < 10_000


def test_the_open_files_limit_is_raised_to_the_hard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from portside.app.supervisor import raise_open_files_limit

    calls: list[tuple[int, tuple[int, int]]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 65536))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append((which, limits)))
    raise_open_files_limit()
    assert calls == [(resource.RLIMIT_NOFILE, (65536, 65536))]
    calls.clear()
    monkeypatch.setattr(resource, "getrlimit", lambda which: (65536, 65536))
    raise_open_files_limit()
    assert calls == []
