"""The listening sockets of ``portside serve``, bound by the supervisor.

On Linux, each worker slot gets its own socket for each TCP address, all with
``SO_REUSEPORT``, so that the kernel spreads new connections evenly over the
workers (one shared socket lets whichever worker wakes first take a whole
batch). The supervisor binds them and keeps them open, rather than each worker
binding its own, for one reason: closing a listening socket resets the
connections waiting in its queue. A worker replaced in a rolling restart, or
killed, hands its slot's sockets to its successor with their queues intact, so
no connection is refused or reset; while the slot is empty the kernel queues its
share of connections (up to ``--backlog``) until the new worker accepts them.

Unix sockets, ``fd://N`` and systemd's sockets (``LISTEN_FDS``), and TCP where
``SO_REUSEPORT`` does not balance (not Linux), are one socket shared by every
worker.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
from collections.abc import MutableMapping

from .config import Bind, Listen

__all__ = ["BindError", "Listeners", "systemd_sockets"]

REUSE_PORT_BALANCES = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class BindError(Exception):
    """A listening socket could not be created; the message says which and why."""


def systemd_sockets(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The sockets systemd passed (``LISTEN_FDS``, ``LISTEN_PID``); unsets the variables.

    Returns:
        The sockets, from file descriptor 3 on; empty when none were passed to
        this process.
    """
    environ = os.environ if environ is None else environ
    pid = environ.pop("LISTEN_PID", None)
    count = environ.pop("LISTEN_FDS", None)
    environ.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        number = int(count)
    except ValueError:
        return []
    sockets = []
    for fd in range(3, 3 + number):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


class Listeners:
    """The listening sockets, shared or per worker slot.

    Args:
        listen: The ``--bind`` addresses and ``--backlog``.
        inherited: Sockets systemd passed; they replace ``--bind``.
    """

    def __init__(
        self,
        listen: Listen,
        inherited: list[socket.socket] | None = None,
        reuse_port: bool = REUSE_PORT_BALANCES,
    ) -> None:
        self.listen = listen
        self.reuse_port = reuse_port
        self.inherited = bool(inherited)
        self.shared: list[socket.socket] = list(inherited or [])
        # Per-slot TCP addresses: (family, sockaddr) with the port resolved.
        self._addresses: list[tuple[int, tuple[object, ...], bool]] = []
        self.slots: dict[int, list[socket.socket]] = {}
        self._unix_paths: list[str] = []
        self.descriptions: list[str] = []

    def open(self) -> None:
        """Bind every address (the first slot's sockets included), or raise BindError."""
        if self.inherited:
            for sock in self.shared:
                self._check_listening(sock, "a socket passed by systemd")
                self.descriptions.append(f"{_describe(sock)} (from systemd)")
            return
        try:
            for bind in self.listen.binds:
                self._open(bind)
        except BaseException:
            self.close()
            raise

    def _open(self, bind: Bind) -> None:
        if bind.kind == "unix":
            self.shared.append(self._bind_unix(bind.path))
            self.descriptions.append(f"unix:{bind.path}")
        elif bind.kind == "fd":
            try:
                sock = socket.socket(fileno=bind.fd)
            except OSError as exc:
                raise BindError(f"--bind fd://{bind.fd}: not a socket: {exc.strerror}") from None
            os.set_inheritable(bind.fd, False)
            self._check_listening(sock, f"fd://{bind.fd}")
            self.shared.append(sock)
            self.descriptions.append(f"{_describe(sock)} (fd://{bind.fd})")
        else:
            try:
                infos = socket.getaddrinfo(
                    bind.host or None,
                    bind.port,
                    type=socket.SOCK_STREAM,
                    flags=socket.AI_PASSIVE,
                )
            except socket.gaierror as exc:
                raise BindError(f"--bind {bind}: cannot resolve {bind.host!r}: {exc}") from None
            addresses = list(dict.fromkeys((family, address) for family, *_, address in infos))
            # Several addresses (both families): each socket takes its own.
            v6only = len(addresses) > 1
            port = bind.port
            for family, address in addresses:
                if port:
                    address = (address[0], port, *address[2:])
                sock = self._bind_tcp(family, address, str(bind), self.reuse_port, v6only)
                # Port 0: every other socket takes the port the first one got.
                port = sock.getsockname()[1]
                address = (address[0], port, *address[2:])
                self.descriptions.append(_describe(sock))
                if self.reuse_port:
                    self._addresses.append((family, address, v6only))
                    self.slots.setdefault(0, []).append(sock)
                else:
                    self.shared.append(sock)

    def _bind_tcp(
        self,
        family: int,
        address: tuple[object, ...],
        name: str,
        reuse_port: bool,
        v6only: bool = False,
    ) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
            sock.bind(address)
            sock.listen(self.listen.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = ": address already in use (another server runs there? pick another port)"
            elif exc.errno == errno.EACCES:
                hint = ": permission denied (ports below 1024 need privileges)"
            else:
                hint = f": {exc.strerror or exc}"
            raise BindError(f"--bind {name}: cannot listen{hint}") from None
        return sock

    def _bind_unix(self, path: str) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    try:
                        probe.connect(path)
                    except OSError:
                        os.unlink(path)  # a stale socket file
                    else:
                        raise BindError(f"--bind unix:{path}: a server listens there already")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(self.listen.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise BindError(f"--bind unix:{path}: cannot listen: {exc.strerror or exc}") from None
        self._unix_paths.append(path)
        return sock

    @staticmethod
    def _check_listening(sock: socket.socket, name: str) -> None:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            raise BindError(f"{name} is not a listening stream socket")
        sock.setblocking(False)

    def for_slot(self, slot: int) -> list[socket.socket]:
        """The sockets of the worker in ``slot``: shared ones and the slot's own."""
        if self._addresses and slot not in self.slots:
            sockets = []
            try:
                for family, address, v6only in self._addresses:
                    name = _describe_address(family, address)
                    sockets.append(self._bind_tcp(family, address, name, True, v6only))
            except BindError:
                for sock in sockets:
                    sock.close()
                raise
            self.slots[slot] = sockets
        return [*self.shared, *self.slots.get(slot, [])]

    def release_slot(self, slot: int) -> None:
        """Close the slot's own sockets (its worker stops for good)."""
        for sock in self.slots.pop(slot, []):
            sock.close()

    def close(self) -> None:
        """Close every socket; remove the Unix socket files this process created."""
        for slot in list(self.slots):
            self.release_slot(slot)
        for sock in self.shared:
            sock.close()
        self.shared.clear()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._unix_paths.clear()


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_INET:
        return f"{name[0]}:{name[1]}"
    return f"unix:{name}" if name else "unix socket"


def _describe_address(family: int, address: tuple[object, ...]) -> str:
    if family == socket.AF_INET6:
        return f"[{address[0]}]:{address[1]}"
    return f"{address[0]}:{address[1]}"
