"""The settings of ``portside serve``: one table of options, one frozen dataclass per concern.

Every option is declared once, in :data:`OPTIONS`: its name, its type, its default
and its help. The command line (:mod:`portside.app.cli`), the environment
(``PORTSIDE_<NAME>``) and the TOML file given with ``--config`` are all read
through that table, in this order of precedence: command line, environment, file,
default. Values are converted and checked once, in :func:`resolve`, which raises
:class:`ConfigError` with one line that names the option, where its value came
from, and what to change. :func:`build` then groups the values into the
dataclasses the supervisor and the workers use.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..asyncio.config import ConnectionOptions
from ..exceptions import ProtocolError
from ..protocol.close import Close

__all__ = [
    "OPTIONS",
    "Bind",
    "Config",
    "ConfigError",
    "Endpoints",
    "Limits",
    "Listen",
    "LogSettings",
    "Option",
    "Target",
    "Workers",
    "build",
    "parse_bind",
    "read_toml",
    "resolve",
]

ENV_PREFIX = "PORTSIDE_"


class ConfigError(Exception):
    """A setting is wrong; the message says which, where it came from, and what to change."""


# Converters: each takes what a source gives (a string from the command line or
# the environment, or a TOML value) and returns the typed value, or raises
# ValueError with what is expected.

_NONE_WORDS = ("none", "off", "")


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip().replace("_", ""))
        except ValueError:
            pass
    raise ValueError("expected an integer")


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise ValueError("expected a number") from None
    else:
        raise ValueError("expected a number")
    if not math.isfinite(result):
        raise ValueError("expected a finite number")
    return result


def integer(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        result = _to_int(value)
        if result < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return result

    return convert


def optional_integer(minimum: int) -> Callable[[object], int | None]:
    def convert(value: object) -> int | None:
        if _is_none(value):
            return None
        result = _to_int(value)
        if result < minimum:
            raise ValueError(f"expected an integer >= {minimum}, or 'none'")
        return result

    return convert


def seconds(value: object) -> float:
    result = _to_float(value)
    if result < 0:
        raise ValueError("expected a number of seconds >= 0")
    return result


def optional_seconds(value: object) -> float | None:
    if _is_none(value):
        return None
    return seconds(value)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off", ""):
            return False
    raise ValueError("expected true or false")


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def optional_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return text(value)


def choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value.lower()

    return convert


def http_path(value: object) -> str | None:
    if _is_none(value):
        return None
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in " ?#"):
        raise ValueError("expected a path starting with '/' (no query), or 'none'")
    return value


def close_code(value: object) -> int:
    code = _to_int(value)
    try:
        Close(code, "").serialize()
    except ProtocolError:
        raise ValueError(
            "expected a close code that may be sent: 1000-1003, 1007-1014 or 3000-4999"
        ) from None
    return code


def compression(value: object) -> str | None:
    if _is_none(value):
        return None
    if isinstance(value, str) and value.lower() == "deflate":
        return "deflate"
    raise ValueError("expected 'deflate' or 'none'")


@dataclass(frozen=True)
class Bind:
    """Where to listen: ``tcp`` (``host``, ``port``), ``unix`` (``path``) or ``fd`` (``fd``)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.%a-zA-Z]*)\]:(\d+)")


def parse_bind(spec: str) -> Bind:
    """Parse ``HOST:PORT``, ``[IPV6]:PORT``, ``unix:/path`` or ``fd://N``.

    Raises:
        ValueError: With what is expected.
    """
    spec = spec.strip()
    if spec.startswith("unix:"):
        path = spec[len("unix:") :]
        if not path:
            raise ValueError("expected unix:/path/to/socket")
        return Bind("unix", path=path)
    if spec.startswith("fd://"):
        try:
            fd = int(spec[len("fd://") :])
        except ValueError:
            raise ValueError("expected fd://N with N a file descriptor number") from None
        if fd < 0:
            raise ValueError("expected fd://N with N a file descriptor number")
        return Bind("fd", fd=fd)
    match = _BRACKETED.fullmatch(spec)
    if match:
        host, port_text = match.group(1), match.group(2)
    else:
        host, sep, port_text = spec.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected HOST:PORT, [IPV6]:PORT, unix:/path or fd://N")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError("expected HOST:PORT with PORT a number") from None
    if not 0 <= port <= 65535:
        raise ValueError("expected a port between 0 and 65535")
    return Bind("tcp", host=host, port=port)


def binds(value: object) -> tuple[str, ...]:
    """The ``bind`` option: one address, a list, or a comma-separated string."""
    if isinstance(value, str):
        items = [item for item in re.split(r"[,\s]+", value) if item]
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError("expected addresses as strings")
            items.append(item)
    else:
        raise ValueError("expected an address or a list of addresses")
    if not items:
        raise ValueError("expected at least one address")
    for item in items:
        parse_bind(item)
    return tuple(items)


def directories(value: object) -> tuple[str, ...]:
    """The ``reload_dir`` option: a directory, a list, or a ``os.pathsep``-separated string."""
    if isinstance(value, str):
        return tuple(item for item in value.split(os.pathsep) if item)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a directory or a list of directories")


@dataclass(frozen=True)
class Option:
    """One setting of ``portside serve``.

    Attributes:
        name: The Python name; the flag is ``--name-with-dashes``, the environment
            variable ``PORTSIDE_NAME``, the TOML key ``name``.
        convert: Turns a raw value into the typed one, or raises ValueError.
        default: The value when no source sets it (already typed).
        help: One line for ``--help`` and the reference.
        metavar: What ``--help`` shows for the value; ``None`` for a flag.
        repeat: The flag may be given several times (values are collected).
    """

    name: str
    convert: Callable[[object], Any]
    default: Any
    help: str
    metavar: str | None = "VALUE"
    repeat: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag, ``--name-with-dashes``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, ``PORTSIDE_NAME``."""
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    # What to serve.
    Option(
        "app", optional_text, None, "the handler or App to serve, as MODULE:ATTR", "MODULE:ATTR"
    ),
    Option("factory", boolean, False, "ATTR is a callable that returns the handler or App", None),
    Option("app_dir", text, ".", "directory put first on sys.path to import MODULE", "DIR"),
    # Where.
    Option(
        "bind",
        binds,
        ("127.0.0.1:8000",),
        "where to listen: HOST:PORT, [::]:PORT, unix:/path or fd://N; repeatable",
        "ADDRESS",
        repeat=True,
    ),
    Option("backlog", integer(1), 2048, "listen() backlog of each listening socket", "N"),
    Option("certfile", optional_text, None, "TLS certificate chain (PEM): serve wss://", "PATH"),
    Option("keyfile", optional_text, None, "TLS private key (PEM), if not in --certfile", "PATH"),
    Option(
        "ca_certs",
        optional_text,
        None,
        "CA certificates (PEM): require client certificates signed by them",
        "PATH",
    ),
    # Processes.
    Option("workers", integer(0), 1, "worker processes; 0: one per usable core", "N"),
    Option("timeout", seconds, 30.0, "kill a worker whose event loop is blocked this long", "S"),
    Option(
        "graceful_timeout",
        seconds,
        30.0,
        "on stop or restart, seconds before the handlers left are cancelled",
        "S",
    ),
    Option("drain_spread", seconds, 0.0, "spread the Close frames of a drain over S seconds", "S"),
    Option(
        "restart_close_code",
        close_code,
        1012,
        "close code sent by a worker replaced in a rolling restart",
        "CODE",
    ),
    Option(
        "worker_max_connections_served",
        optional_integer(1),
        None,
        "replace a worker (draining it) after it served N connections",
        "N",
    ),
    Option(
        "worker_max_connections_served_jitter",
        optional_integer(0),
        None,
        "add 0 to N at random to that limit, per worker (default: 10 % of it)",
        "N",
    ),
    Option(
        "worker_max_rss",
        optional_integer(1),
        None,
        "replace a worker (draining it) once its resident memory exceeds MiB",
        "MIB",
    ),
    Option(
        "worker_max_rss_jitter",
        optional_integer(0),
        None,
        "add 0 to MiB at random to that limit, per worker (default: 10 % of it)",
        "MIB",
    ),
    Option("reload", boolean, False, "restart the worker when a source file changes", None),
    Option(
        "reload_dir",
        directories,
        (),
        "directory to watch with --reload (default: --app-dir); repeatable",
        "DIR",
        repeat=True,
    ),
    # Connection limits (serve()'s options).
    Option(
        "max_connections",
        optional_integer(1),
        None,
        "connections per worker; past it, 503 + Retry-After",
        "N",
    ),
    Option(
        "max_size",
        optional_integer(0),
        2**20,
        "largest message, in bytes; 'none': no limit",
        "BYTES",
    ),
    Option("max_queue", optional_integer(1), 16, "messages buffered per connection", "N"),
    Option("read_limit", integer(256), 2**16, "most bytes read from a socket at once", "BYTES"),
    Option(
        "write_limit", integer(0), 2**16, "bytes buffered for sending before send() waits", "BYTES"
    ),
    Option(
        "compression",
        compression,
        "deflate",
        "permessage-deflate: 'deflate' or 'none'",
        "deflate|none",
    ),
    Option(
        "ping_interval", optional_seconds, 20.0, "seconds between keepalive pings; 'none': off", "S"
    ),
    Option(
        "ping_timeout", optional_seconds, 20.0, "seconds to wait for a pong; 'none': forever", "S"
    ),
    Option("open_timeout", optional_seconds, 10.0, "seconds for the opening handshake", "S"),
    Option("close_timeout", optional_seconds, 10.0, "seconds for the closing handshake", "S"),
    # HTTP endpoints on the WebSocket port.
    Option("health_path", http_path, "/healthz", "liveness endpoint; 'none': off", "PATH"),
    Option("ready_path", http_path, "/readyz", "readiness endpoint; 'none': off", "PATH"),
    Option("metrics_path", http_path, None, "Prometheus metrics endpoint (off by default)", "PATH"),
    # Runtime and logs.
    Option(
        "loop",
        choice("auto", "asyncio", "uvloop"),
        "auto",
        "event loop: auto, asyncio or uvloop",
        "auto|asyncio|uvloop",
    ),
    Option(
        "log_level",
        choice("critical", "error", "warning", "info", "debug"),
        "info",
        "log level: critical, error, warning, info or debug",
        "LEVEL",
    ),
    Option(
        "log_format",
        choice("text", "json"),
        "text",
        "log lines as text or JSON objects",
        "text|json",
    ),
    Option(
        "log_file",
        optional_text,
        None,
        "append logs to PATH instead of stderr (SIGUSR1 reopens it)",
        "PATH",
    ),
    Option("access_log", boolean, False, "log one line per connection when it ends", None),
)


BY_NAME = {option.name: option for option in OPTIONS}


def read_toml(path: str) -> dict[str, Any]:
    """Read a ``--config`` file: a flat table of option names (with ``_`` or ``-``).

    Raises:
        ConfigError: If the file cannot be read or parsed.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(
                f"--config {path}: reading TOML on Python 3.10 needs tomli (pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML: {exc}") from None
    return dict(data)


def resolve(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    file: Mapping[str, Any],
    file_name: str = "the config file",
) -> tuple[dict[str, Any], frozenset[str]]:
    """Merge the sources, command line first; convert and check each value.

    Args:
        cli: Option name to the raw value given on the command line (absent
            when not given; a list for repeatable options).
        env: The environment; ``PORTSIDE_<NAME>`` variables are read.
        file: The parsed TOML file.
        file_name: How error messages name the file.

    Returns:
        The value of every option, and the names of those set by a source
        (as opposed to defaults).

    Raises:
        ConfigError: For an unknown key in the file or a wrong value anywhere.
    """
    file_values: dict[str, Any] = {}
    for key, value in file.items():
        name = key.replace("-", "_")
        if name not in BY_NAME:
            known = ", ".join(sorted(BY_NAME))
            raise ConfigError(f"{file_name}: unknown key {key!r}; known keys: {known}")
        file_values[name] = value
    values: dict[str, Any] = {}
    explicit = set()
    for option in OPTIONS:
        if option.name in cli:
            raw, where = cli[option.name], option.flag
        elif option.env in env:
            raw, where = env[option.env], option.env
        elif option.name in file_values:
            raw, where = file_values[option.name], f"{option.name} in {file_name}"
        else:
            values[option.name] = option.default
            continue
        try:
            values[option.name] = option.convert(raw)
        except ValueError as exc:
            shown = raw if not isinstance(raw, list) else ", ".join(map(str, raw))
            raise ConfigError(f"{where}: {exc}, not {shown!r}") from None
        explicit.add(option.name)
    return values, frozenset(explicit)


# The settings, one dataclass per concern.


@dataclass(frozen=True)
class Target:
    """What to serve."""

    app: str
    factory: bool
    app_dir: str


@dataclass(frozen=True)
class Listen:
    """Where to listen, and TLS."""

    binds: tuple[Bind, ...]
    backlog: int
    certfile: str | None
    keyfile: str | None
    ca_certs: str | None


@dataclass(frozen=True)
class Workers:
    """The supervisor's settings: how many workers, and when to replace them."""

    count: int
    timeout: float
    graceful_timeout: float
    drain_spread: float
    restart_close_code: int
    max_connections_served: int | None
    max_connections_served_jitter: int
    max_rss_mib: int | None
    max_rss_jitter_mib: int
    reload: bool
    reload_dirs: tuple[str, ...]


@dataclass(frozen=True)
class Limits:
    """``serve()``'s options, and which of them a source set explicitly.

    Options no source set give way to those the :class:`~portside.App` carries.
    """

    max_connections: int | None
    connection: ConnectionOptions
    compression: str | None
    open_timeout: float | None
    explicit: frozenset[str]

    def serve_options(self) -> dict[str, Any]:
        """The options as ``serve()`` keyword arguments."""
        options = dataclasses.asdict(self.connection)
        options["compression"] = self.compression
        options["open_timeout"] = self.open_timeout
        return options


@dataclass(frozen=True)
class Endpoints:
    """The HTTP endpoints answered on the WebSocket port; ``None``: off."""

    health_path: str | None
    ready_path: str | None
    metrics_path: str | None


@dataclass(frozen=True)
class LogSettings:
    """Logging."""

    level: str
    format: str
    file: str | None
    access_log: bool


@dataclass(frozen=True)
class Config:
    """Everything ``portside serve`` was told, checked.

    Attributes:
        values: Every option's value by name, as :func:`resolve` returned them;
            what the supervisor hands to its workers.
        explicit: The names of the options a source set.
    """

    target: Target
    listen: Listen
    workers: Workers
    limits: Limits
    endpoints: Endpoints
    logging: LogSettings
    loop: str
    values: Mapping[str, Any]
    explicit: frozenset[str]


SERVE_OPTIONS = (
    "max_size",
    "max_queue",
    "read_limit",
    "write_limit",
    "compression",
    "ping_interval",
    "ping_timeout",
    "open_timeout",
    "close_timeout",
)


def build(values: Mapping[str, Any], explicit: Iterable[str] = ()) -> Config:
    """Group the values of :func:`resolve` into a :class:`Config`; check how they combine.

    Raises:
        ConfigError: When options contradict each other.
    """
    explicit = frozenset(explicit)
    app = values["app"]
    if app is None:
        raise ConfigError("no app given: portside serve MODULE:ATTR (or app = ... in --config)")
    module, sep, attr = app.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"app must be MODULE:ATTR, e.g. myapp.server:handler, not {app!r}")
    binds = tuple(parse_bind(spec) for spec in values["bind"])
    if values["keyfile"] is not None and values["certfile"] is None:
        raise ConfigError("--keyfile needs --certfile")
    if values["ca_certs"] is not None and values["certfile"] is None:
        raise ConfigError("--ca-certs needs --certfile")
    if values["drain_spread"] >= values["graceful_timeout"] > 0 and values["drain_spread"] > 0:
        raise ConfigError(
            f"--drain-spread ({values['drain_spread']:g} s) must be shorter than "
            f"--graceful-timeout ({values['graceful_timeout']:g} s)"
        )
    if values["timeout"] <= 0:
        raise ConfigError("--timeout must be more than 0 seconds")
    try:
        connection = ConnectionOptions.validate(
            max_size=values["max_size"],
            max_queue=values["max_queue"],
            read_limit=values["read_limit"],
            write_limit=values["write_limit"],
            ping_interval=values["ping_interval"],
            ping_timeout=values["ping_timeout"],
            close_timeout=values["close_timeout"],
        )
    except (TypeError, ValueError) as exc:  # pragma: no cover - the converters check first
        raise ConfigError(str(exc)) from None
    served = values["worker_max_connections_served"]
    served_jitter = values["worker_max_connections_served_jitter"]
    if served_jitter is None:
        served_jitter = served // 10 if served is not None else 0
    rss = values["worker_max_rss"]
    rss_jitter = values["worker_max_rss_jitter"]
    if rss_jitter is None:
        rss_jitter = rss // 10 if rss is not None else 0
    paths = [values[name] for name in ("health_path", "ready_path", "metrics_path")]
    set_paths = [path for path in paths if path is not None]
    if len(set(set_paths)) != len(set_paths):
        raise ConfigError("--health-path, --ready-path and --metrics-path must differ")
    return Config(
        target=Target(app=app, factory=values["factory"], app_dir=values["app_dir"]),
        listen=Listen(
            binds=binds,
            backlog=values["backlog"],
            certfile=values["certfile"],
            keyfile=values["keyfile"],
            ca_certs=values["ca_certs"],
        ),
        workers=Workers(
            count=values["workers"],
            timeout=values["timeout"],
            graceful_timeout=values["graceful_timeout"],
            drain_spread=values["drain_spread"],
            restart_close_code=values["restart_close_code"],
            max_connections_served=served,
            max_connections_served_jitter=served_jitter,
            max_rss_mib=rss,
            max_rss_jitter_mib=rss_jitter,
            reload=values["reload"],
            reload_dirs=tuple(values["reload_dir"]) or (values["app_dir"],),
        ),
        limits=Limits(
            max_connections=values["max_connections"],
            connection=connection,
            compression=values["compression"],
            open_timeout=values["open_timeout"],
            explicit=frozenset(name for name in SERVE_OPTIONS if name in explicit),
        ),
        endpoints=Endpoints(*paths),
        logging=LogSettings(
            level=values["log_level"],
            format=values["log_format"],
            file=values["log_file"],
            access_log=values["access_log"],
        ),
        loop=values["loop"],
        values=dict(values),
        explicit=explicit,
    )


def defaults() -> dict[str, Any]:
    """Every option's default value."""
    return {option.name: option.default for option in OPTIONS}
