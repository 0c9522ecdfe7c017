"""The state every runner shares during a run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.lognotes import LogNote, scan_log
from bench.procs import Launcher, ServerProcess
from bench.settings import Settings

__all__ = ["Context"]


def to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Context:
    """Settings, how to start children, the TLS certificate, and what went wrong."""

    settings: Settings
    launcher: Launcher
    cert: tuple[Path, Path] | None
    log_notes: list[LogNote] = field(default_factory=list)
    progress: Callable[[str], None] = to_stderr

    def note_log(self, server: ServerProcess) -> None:
        """Remember a stopped server's log if it holds errors."""
        note = scan_log(server.name, server.log)
        if note is not None:
            self.log_notes.append(note)
