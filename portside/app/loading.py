"""Loading ``MODULE:ATTR``: the handler or :class:`~portside.App` to serve.

Errors become :class:`LoadError` with one line that says what is wrong and what
to change; the traceback is kept for ``--log-level debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from .app import App, as_app
from .config import Target

__all__ = ["LoadError", "load"]


class LoadError(Exception):
    """MODULE:ATTR could not be loaded.

    Attributes:
        details: The traceback, for ``--log-level debug``.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def load(target: Target) -> App:
    """Import ``target.app`` from ``target.app_dir``; call it if ``target.factory``.

    Raises:
        LoadError: With a one-line message.
    """
    app_dir = os.path.abspath(target.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module_name, _, attr = target.app.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        details = traceback.format_exc()
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise LoadError(
                f"cannot import {module_name!r}: no such module in {app_dir} or on sys.path "
                "(check the name, --app-dir, or the virtualenv)",
                details,
            ) from None
        raise LoadError(f"importing {module_name!r} failed: {_one_line(exc)}", details) from None
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise LoadError(
            f"importing {module_name!r} failed: syntax error at {where}: {exc.msg}",
            traceback.format_exc(),
        ) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise LoadError(
            f"importing {module_name!r} failed: {_one_line(exc)}", traceback.format_exc()
        ) from None
    value: object = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if target.factory:
        if not callable(value):
            raise LoadError(f"--factory: {target.app} is not callable")
        try:
            value = value()
        except Exception as exc:
            raise LoadError(
                f"--factory: calling {target.app} failed: {_one_line(exc)}", traceback.format_exc()
            ) from None
    try:
        return as_app(value)
    except TypeError:
        raise LoadError(
            f"{target.app} is a {type(value).__name__}: expected a handler or a portside.App"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
