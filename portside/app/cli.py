"""The command line: ``portside serve MODULE:ATTR [options]``, and ``portside ws://...``.

Every option comes from :data:`portside.app.config.OPTIONS`; the command line
beats ``PORTSIDE_<NAME>`` environment variables, which beat the TOML file of
``--config``. A wrong option, an unknown key or a value out of range gives one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ..version import __version__
from . import logs
from .config import OPTIONS, ConfigError, build, read_toml, resolve
from .supervisor import EXIT_CONFIG, Supervisor, print_error

__all__ = ["main", "parser"]

USAGE = """\
usage: portside serve MODULE:ATTR [options]     serve a handler or App (see --help)
       portside ws://HOST:PORT/PATH [options]   interactive client
       portside --version
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see {self.prog} --help)")
        sys.exit(EXIT_CONFIG)


def parser() -> argparse.ArgumentParser:
    """The parser of ``portside serve``."""
    serve = _Parser(
        prog="portside serve",
        description=(
            "Serve a WebSocket handler or portside.App with worker processes, graceful "
            "drains, rolling restarts, health checks and metrics. Each option can also "
            "be set as PORTSIDE_<NAME> in the environment or as <name> in the TOML file "
            "of --config; the command line wins, then the environment, then the file."
        ),
        argument_default=argparse.SUPPRESS,
    )
    serve.add_argument(
        "--config", metavar="PATH", help="read options from this TOML file (env PORTSIDE_CONFIG)"
    )
    for option in OPTIONS:
        default = option.default
        if isinstance(default, tuple):
            default = ", ".join(default) if default else "none"
        shown = f" (default: {default})" if default not in (None, False) else ""
        text = (option.help + shown).replace("%", "%%")
        if option.name == "app":
            serve.add_argument("app", nargs="?", metavar="MODULE:ATTR", help=option.help)
        elif option.metavar is None:
            serve.add_argument(
                option.flag,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                help=option.help.replace("%", "%%"),
            )
        else:
            serve.add_argument(
                option.flag,
                dest=option.name,
                metavar=option.metavar,
                action="append" if option.repeat else "store",
                help=text,
            )
    return serve


def serve(argv: Sequence[str]) -> int:
    """``portside serve ...``: run the supervisor; return the exit status."""
    args = vars(parser().parse_args(argv))
    config_path = args.pop("config", None) or os.environ.get("PORTSIDE_CONFIG") or None
    cli: dict[str, Any] = args
    try:
        file = read_toml(config_path) if config_path else {}
        values, explicit = resolve(cli, os.environ, file, config_path or "the config file")
        config = build(values, explicit)
    except ConfigError as exc:
        print_error(str(exc))
        return EXIT_CONFIG
    try:
        logs.configure(config.logging.level, config.logging.format, config.logging.file)
    except OSError as exc:
        print_error(f"--log-file {config.logging.file}: {exc.strerror or exc}")
        return EXIT_CONFIG
    return Supervisor(config).run()


def interactive(argv: Sequence[str]) -> int:
    """``portside ws://...``: the interactive client, if this version has it."""
    if importlib.util.find_spec("portside.interactive") is None:
        print_error("the interactive client (portside.interactive) is not in this version")
        return EXIT_CONFIG
    from .. import interactive as client  # type: ignore[attr-defined,unused-ignore]

    return int(client.main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """``portside`` and ``python -m portside``: dispatch to a command; return the status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(USAGE)
        return EXIT_CONFIG
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv[0] == "--version":
        sys.stdout.write(f"portside {__version__}\n")
        return 0
    if argv[0] == "serve":
        return serve(argv[1:])
    if argv[0].startswith(("ws://", "wss://")):
        return interactive(argv)
    print_error(f"unknown command {argv[0]!r}")
    sys.stderr.write(USAGE)
    return EXIT_CONFIG
