"""What gets measured: the contenders, the rows, and the order they run in."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Union

from bench.settings import KiB, MiB, Settings

__all__ = [
    "CONTENDERS",
    "SERVERS",
    "Contender",
    "EchoRow",
    "HandshakeRow",
    "MemoryRow",
    "Row",
    "ServerConfig",
    "build_plan",
    "format_size",
]

# Server modules, in rotation order. Only these implement permessage-deflate.
SERVERS = ("portside", "websockets", "aiohttp", "picows")
DEFLATE_SERVERS = ("portside", "websockets", "aiohttp")

JSON_MESSAGE_SIZE = 8 * KiB


@dataclass(frozen=True)
class Contender:
    """A column of the echo tables: a server, and which client drives it."""

    key: str
    label: str
    server: str
    # True: the library's own client ("portside->portside"); False: the row's load client.
    own_client: bool = False
    # True: a second process of the same server, measured in its own slot of the
    # rotation like any other contender. The two should be equal, so their ratio
    # is what the machine's noise alone does to a comparison in one run.
    replica: bool = False

    @property
    def process(self) -> str:
        """The server process this contender is measured on (a row starts each once)."""
        return self.key if self.replica else self.server


CONTENDERS = {
    "portside": Contender("portside", "portside", "portside"),
    "websockets": Contender("websockets", "websockets", "websockets"),
    "aiohttp": Contender("aiohttp", "aiohttp", "aiohttp"),
    "picows": Contender("picows", "picows", "picows"),
    "picows-again": Contender("picows-again", "picows again", "picows", replica=True),
    "portside-client": Contender(
        "portside-client", "portside->portside", "portside", own_client=True
    ),
}


@dataclass(frozen=True)
class ServerConfig:
    """How a server process is started; rows with the same config share processes."""

    loop: str
    tls: bool = False
    compression: bool = False

    @property
    def slug(self) -> str:
        return "-".join(
            [self.loop, *(["tls"] if self.tls else []), *(["deflate"] if self.compression else [])]
        )


def format_size(size: int) -> str:
    if size >= MiB and size % MiB == 0:
        return f"{size // MiB} MiB"
    if size >= KiB and size % KiB == 0:
        return f"{size // KiB} KiB"
    return f"{size} B"


@dataclass(frozen=True)
class EchoRow:
    """Ping-pong round trips per second."""

    size: int
    connections: int
    loop: str
    tls: bool = False
    deflate: bool = False

    @property
    def kind(self) -> str:
        return "deflate" if self.deflate else "tls" if self.tls else "echo"

    @property
    def id(self) -> str:
        size = format_size(self.size).replace(" ", "")
        return f"{self.kind}-{size}-c{self.connections}-{self.loop}"

    @property
    def title(self) -> str:
        conns = "conn" if self.connections == 1 else "conns"
        extra = ", TLS" if self.tls else ", JSON text, deflate" if self.deflate else ""
        return f"{format_size(self.size)}, {self.connections} {conns}, {self.loop}{extra}"

    @property
    def config(self) -> ServerConfig:
        return ServerConfig(self.loop, self.tls, self.deflate)

    def contenders(self) -> tuple[str, ...]:
        if self.deflate:
            return (*DEFLATE_SERVERS, "portside-client")
        # The control leads the rotation, about as far from picows as portside is
        # (four slots against three), so that both pairs see the same drift.
        control = ("picows-again",) if self.kind == "echo" else ()
        return (*control, *SERVERS, "portside-client")


@dataclass(frozen=True)
class HandshakeRow:
    """Opening plus closing handshakes per second, with many at a time."""

    loop: str
    compression: bool

    kind = "handshake"

    @property
    def id(self) -> str:
        return f"handshake-{'deflate' if self.compression else 'off'}-{self.loop}"

    @property
    def title(self) -> str:
        return f"{'deflate offered' if self.compression else 'compression off'}, {self.loop}"

    @property
    def config(self) -> ServerConfig:
        return ServerConfig(self.loop, compression=self.compression)

    def contenders(self) -> tuple[str, ...]:
        return DEFLATE_SERVERS if self.compression else SERVERS


@dataclass(frozen=True)
class MemoryRow:
    """Server RSS per idle connection."""

    compression: bool
    connections: int

    kind = "memory"

    @property
    def id(self) -> str:
        return f"memory-{'deflate' if self.compression else 'off'}"

    @property
    def title(self) -> str:
        what = "deflate negotiated" if self.compression else "compression off"
        return f"{what}, {self.connections:,} conns"

    @property
    def config(self) -> ServerConfig:
        return ServerConfig("uvloop", compression=self.compression)

    def contenders(self) -> tuple[str, ...]:
        return DEFLATE_SERVERS if self.compression else SERVERS


Row = Union[EchoRow, HandshakeRow, MemoryRow]


def all_rows(settings: Settings) -> list[Row]:
    rows: list[Row] = []
    for loop in settings.loops:
        for size in settings.sizes:
            for connections in settings.connections:
                rows.append(EchoRow(size, connections, loop))
    if settings.tls_row:
        rows.append(EchoRow(256, 1, "uvloop", tls=True))
    if settings.deflate_row:
        rows.append(EchoRow(JSON_MESSAGE_SIZE, 1, "uvloop", deflate=True))
    for loop in settings.handshake_loops:
        for compression in settings.handshake_compression:
            rows.append(HandshakeRow(loop, compression))
    for compression in (False, True):
        rows.append(MemoryRow(compression, settings.memory_connections))
    return rows


def matches(row_id: str, pattern: str) -> bool:
    """``--only`` patterns: a glob on row ids, or a prefix up to a dash (``echo-256B``)."""
    return fnmatch.fnmatchcase(row_id, pattern) or row_id.startswith(pattern + "-")


def build_plan(settings: Settings) -> list[Row]:
    """The rows to run, in order, after the ``--only`` filter.

    Rows sharing a server configuration are adjacent, so servers start once per group.
    """
    rows = all_rows(settings)
    if settings.only:
        rows = [row for row in rows if any(matches(row.id, p) for p in settings.only)]
    return rows


def contenders_for(row: Row, settings: Settings) -> list[Contender]:
    """The row's contenders in rotation order, after the ``--servers`` filter."""
    keys = row.contenders()
    if settings.servers:
        keys = tuple(key for key in keys if key in settings.servers)
    return [CONTENDERS[key] for key in keys]
