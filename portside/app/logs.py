"""Logging for ``portside serve``: text or JSON lines, to stderr or a file reopened on SIGUSR1.

Every process (the supervisor and each worker) writes its own lines to the same
destination; a file is opened in append mode, so lines from several processes
do not overwrite each other. ``logrotate`` moves the file, then sends SIGUSR1:
each process reopens it (``copytruncate`` is not needed).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

__all__ = ["JSONFormatter", "configure", "reopen"]

# Attributes every LogRecord has: what is not among them was passed with extra=.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The text format, with UTC timestamps."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )


_handler: logging.Handler | None = None


def configure(level: str, format: str, file: str | None) -> None:
    """Send the root logger's records to stderr or ``file``, as text or JSON.

    Raises:
        OSError: If ``file`` cannot be opened.
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(os.path.abspath(file), mode="a", encoding="utf-8")
    handler.setFormatter(JSONFormatter() if format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler


def reopen() -> None:
    """Reopen the log file (after ``logrotate`` moved it); nothing for stderr."""
    handler = _handler
    if isinstance(handler, logging.FileHandler):
        handler.acquire()
        try:
            handler.close()
            handler.stream = handler._open()
        finally:
            handler.release()
