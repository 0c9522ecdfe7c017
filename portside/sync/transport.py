"""Blocking socket I/O for the threading layer: plain sockets and TLS.

A connection reads in one thread at a time and writes in one thread at a time,
but reads and writes happen concurrently. That is safe on a plain socket. It is
not on an :class:`ssl.SSLSocket`: OpenSSL forbids using one ``SSL`` object from
two threads at once, and a blocked ``SSL_read`` would hold it for as long as the
peer is silent. :class:`TLSTransport` therefore runs TLS over memory BIOs: the
socket is read and written as a plain socket, without any lock, and the ``SSL``
object only encrypts and decrypts, under the connection's lock, which is never
held during I/O.

The methods that touch the ``SSL`` object say so: their caller holds the lock
given to the transport.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any, Union, cast

__all__ = ["Transport", "TLSTransport", "remaining", "wait_for"]

Buffer = Union[bytes, bytearray, memoryview]

# Bytes taken from the socket in one read under TLS (records are up to 16 KiB).
_TLS_READ_SIZE = 2**17

_POLL_IN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLL_OUT = select.POLLOUT | select.POLLERR | select.POLLHUP


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a :func:`time.monotonic` time), at least 0.

    ``None``, no deadline, gives ``None``: a timeout that never expires.
    """
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def wait_for(sock: socket.socket, events: int, timeout: float | None) -> bool:
    """Wait until ``sock`` is ready for ``events`` (``select.POLLIN``/``POLLOUT``).

    Returns:
        Whether it is ready; ``False`` when ``timeout`` elapsed first.
    """
    poller = select.poll()
    poller.register(sock, events)
    millis = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(millis))


class Transport:
    """A connected stream socket, used in blocking mode.

    Args:
        sock: The socket; the transport owns it from now on.
        lock: The connection's lock (see :class:`TLSTransport`); a new one by default.

    Attributes:
        sock: The socket.
        lock: The connection's lock.
    """

    def __init__(self, sock: socket.socket, lock: threading.Lock | None = None) -> None:
        sock.setblocking(True)
        self.sock = sock
        self.lock = lock if lock is not None else threading.Lock()
        self._closed = False
        self._poller = select.poll()  # for reads with a timeout, by the reader
        self._poller.register(sock, _POLL_IN)

    @property
    def secure(self) -> bool:
        """Whether the transport speaks TLS."""
        return False

    def fileno(self) -> int:
        """The socket's file descriptor."""
        return self.sock.fileno()

    def extra(self) -> dict[str, Any]:
        """Addresses and TLS details, read once while the socket is connected."""
        info: dict[str, Any] = {}
        for key, getter in (
            ("sockname", self.sock.getsockname),
            ("peername", self.sock.getpeername),
        ):
            try:
                info[key] = getter()
            except OSError:
                info[key] = None
        return info

    # Reading: one thread at a time.

    def recv_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Read into ``buffer``; return the byte count, 0 at end of stream.

        Raises:
            TimeoutError: If nothing arrived within ``timeout`` seconds.
            OSError: If the socket failed.
        """
        if timeout is not None and not self._poll(timeout):
            raise TimeoutError("timed out")
        return self.sock.recv_into(buffer)

    def _poll(self, timeout: float) -> bool:
        millis = max(0, int(timeout * 1000 + 0.999))
        return bool(self._poller.poll(millis))

    def buffered(self) -> bool:
        """Whether bytes are ready to read without waiting for the socket."""
        return False

    # Writing: one thread at a time.

    def encode(self, frames: list[bytes]) -> list[bytes]:
        """Return what to write on the socket for ``frames`` (under the lock for TLS)."""
        return frames

    def has_output(self) -> bool:
        """Whether TLS produced bytes to send besides frames (under the lock)."""
        return False

    def send(self, data: Sequence[Buffer], timeout: float | None = None) -> None:
        """Write every buffer of ``data``, in order, blocking as long as needed.

        Raises:
            TimeoutError: If ``timeout`` elapsed before everything was written.
            OSError: If the socket failed.
        """
        if timeout is not None:
            deadline = time.monotonic() + timeout
            rest = self.send_nowait(data)
            while rest:
                if not wait_for(self.sock, _POLL_OUT, deadline - time.monotonic()):
                    raise TimeoutError("timed out while writing")
                rest = self.send_nowait(rest)
            return
        sock = self.sock
        if len(data) == 1:
            sock.sendall(data[0])
            return
        rest = list(data)
        while rest:
            sent = sock.sendmsg(rest[:_IOV_MAX])
            rest = _consume(rest, sent)

    def send_nowait(self, data: Sequence[Buffer]) -> list[Buffer]:
        """Write what the socket takes without blocking; return the rest.

        Raises:
            OSError: If the socket failed.
        """
        rest = list(data)
        sock = self.sock
        while rest:
            try:
                sent = sock.sendmsg(rest[:_IOV_MAX], (), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            rest = _consume(rest, sent)
        return rest

    def wait_writable(self, timeout: float | None) -> bool:
        """Wait until the socket takes more bytes."""
        return wait_for(self.sock, _POLL_OUT, timeout)

    # Closing.

    def close_output(self) -> None:
        """Prepare the end of the stream (TLS: queue close_notify; under the lock)."""

    def shutdown(self) -> None:
        """End the connection both ways; blocked reads and writes return at once.

        Safe from any thread; the file descriptor stays open until :meth:`close`.
        """
        with contextlib.suppress(OSError):  # not connected any more
            self.sock.shutdown(socket.SHUT_RDWR)

    def shutdown_read(self) -> None:
        """Stop reading: a read blocked on the socket returns end of stream."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)

    def close(self) -> None:
        """Close the socket, once no thread uses it any more."""
        if not self._closed:
            self._closed = True
            self.sock.close()


# The most buffers sendmsg() takes at once (Linux: 1024).
_IOV_MAX = 1024


def _consume(data: list[Buffer], sent: int) -> list[Buffer]:
    """Drop the first ``sent`` bytes of the buffers in ``data``."""
    index = 0
    while index < len(data):
        size = len(data[index])
        if sent < size:
            if sent:
                data[index] = memoryview(data[index])[sent:]
            break
        sent -= size
        index += 1
    return data[index:]


class _Layer:
    """One TLS session: an ``SSLObject`` between two memory BIOs."""

    __slots__ = ("incoming", "outgoing", "ssl_object")

    def __init__(
        self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )


class TLSTransport(Transport):
    """TLS over a connected socket, through memory BIOs.

    Create it, then call :meth:`handshake` before anything else, in one thread.
    :meth:`add_layer` stacks a second TLS session inside the first one, for
    ``wss://`` through an ``https://`` proxy: the first session is with the
    proxy, the second, through the tunnel, with the server.

    Args:
        sock: The socket; the transport owns it from now on.
        context: The TLS settings.
        server_side: Whether this side is the server.
        server_hostname: The name the server's certificate must match (clients).
        lock: The lock under which the connection calls the methods that touch
            the ``SSL`` objects (:meth:`encode`, :meth:`has_output`,
            :meth:`close_output`); :meth:`recv_into` takes it itself.
    """

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        super().__init__(sock, lock)
        self._layers: list[_Layer] = []
        # True when the ciphertext buffered is not a whole record: reading
        # needs more bytes from the socket.
        self._starved = True
        self.add_layer(context, server_side=server_side, server_hostname=server_hostname)

    @property
    def secure(self) -> bool:  # noqa: D102
        return True

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The innermost TLS session: the one with the peer."""
        return self._layers[-1].ssl_object

    def add_layer(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        """Start a TLS session inside the current one (call :meth:`handshake` next)."""
        self._layers.append(_Layer(context, server_side, server_hostname))

    def extra(self) -> dict[str, Any]:  # noqa: D102
        info = super().extra()
        info["ssl_object"] = self.ssl_object
        info["peercert"] = self.ssl_object.getpeercert()
        info["cipher"] = self.ssl_object.cipher()
        return info

    def handshake(self, timeout: float | None) -> None:
        """Perform the innermost session's TLS handshake, in one thread.

        Raises:
            TimeoutError: If it did not complete within ``timeout`` seconds.
            ssl.SSLError: If it failed.
            OSError: If the socket failed or closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        top = self._layers[-1]
        while True:
            try:
                top.ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            else:
                done = True
            data = self._encrypt([])
            if data:
                Transport.send(self, [data], remaining(deadline))
            if done:
                return
            if not self._pump():
                self._receive_ciphertext(deadline, "the TLS handshake")

    def _receive_ciphertext(self, deadline: float | None, during: str) -> None:
        if deadline is not None and not self._poll(remaining(deadline) or 0.0):
            raise TimeoutError(f"timed out during {during}")
        data = self.sock.recv(_TLS_READ_SIZE)
        if not data:
            raise ConnectionResetError(f"connection closed during {during}")
        self._layers[0].incoming.write(data)

    def _pump(self) -> bool:
        """Move what the outer sessions decrypted into the inner ones.

        Returns:
            Whether the innermost session got bytes.
        """
        layers = self._layers
        moved = False
        for outer, inner in itertools.pairwise(layers):
            moved = False
            while True:
                try:
                    chunk = outer.ssl_object.read(_TLS_READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    inner.incoming.write_eof()
                    break
                if not chunk:
                    inner.incoming.write_eof()
                    break
                inner.incoming.write(chunk)
                moved = True
        return moved

    # Reading: one thread at a time.

    def recv_into(self, buffer: memoryview, timeout: float | None = None) -> int:  # noqa: D102
        deadline = None if timeout is None else time.monotonic() + timeout
        outermost = self._layers[0].incoming
        while True:
            with self.lock:
                count = self._read_plaintext(buffer)
            if count is not None:
                return count
            # More ciphertext needed: read the socket without holding the lock.
            if deadline is not None and not self._poll(deadline - time.monotonic()):
                raise TimeoutError("timed out")
            data = self.sock.recv(_TLS_READ_SIZE)
            with self.lock:
                if data:
                    outermost.write(data)
                else:
                    outermost.write_eof()
                self._starved = False

    def _read_plaintext(self, buffer: memoryview) -> int | None:
        """Decrypt into ``buffer``; ``None`` when a record is incomplete."""
        if len(self._layers) > 1:
            self._pump()
        top = self._layers[-1]
        ssl_object = top.ssl_object
        count = 0
        size = len(buffer)
        try:
            while count < size:
                # With a buffer, read() returns a byte count.
                got = cast(int, ssl_object.read(size - count, buffer[count:]))
                if not got:
                    break
                count += got
                if not ssl_object.pending() and not top.incoming.pending:
                    break
        except ssl.SSLWantReadError:
            self._starved = True
            if count:
                return count
            if top.incoming.eof:
                return 0  # the peer closed TCP in the middle of a record
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # close_notify, or a TCP close without it (a "ragged EOF"): the
            # WebSocket closing handshake, not TLS, says whether that was clean.
            return count
        return count

    def buffered(self) -> bool:  # noqa: D102
        if self.ssl_object.pending():
            return True
        return not self._starved and any(layer.incoming.pending for layer in self._layers)

    # Writing: one thread at a time.

    def encode(self, frames: list[bytes]) -> list[bytes]:  # noqa: D102
        data = self._encrypt(frames)
        return [data] if data else []

    def _encrypt(self, frames: list[bytes]) -> bytes:
        """Encrypt ``frames`` through every session, innermost first."""
        layers = self._layers
        top = layers[-1]
        for frame in frames:
            try:
                top.ssl_object.write(frame)
            except ssl.SSLWantReadError:
                # Only a renegotiation (TLS 1.2) makes writing wait for the peer.
                raise ssl.SSLError("TLS renegotiation is not supported") from None
        data = top.outgoing.read()
        for layer in reversed(layers[:-1]):
            if data:
                layer.ssl_object.write(data)
            data = layer.outgoing.read()
        return data

    def has_output(self) -> bool:  # noqa: D102
        return any(layer.outgoing.pending for layer in self._layers)

    def close_output(self) -> None:  # noqa: D102
        # SSLWantReadError: close_notify is queued; the peer's is not awaited.
        with contextlib.suppress(ssl.SSLError):
            self.ssl_object.unwrap()
