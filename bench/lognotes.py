"""What the servers wrote to stderr: the benchmark's clients close cleanly, so any
traceback in a server log is worth reporting."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LogNote", "scan_log"]

# The lines that name what went wrong: "SomeError: text" at the start of a line.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Closed\w*|Warning)\b.*$", re.M)


@dataclass(frozen=True)
class LogNote:
    """A server log with errors in it."""

    server: str
    path: Path
    tracebacks: int
    error_lines: int
    first: str

    def summary(self) -> str:
        return (
            f"{self.server}: {self.tracebacks} traceback(s), {self.error_lines} error line(s) "
            f"in {self.path}; first: {self.first}"
        )


def scan_log(server: str, path: Path) -> LogNote | None:
    """A note about ``path`` if it holds tracebacks or error lines, else ``None``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    tracebacks = text.count("Traceback (most recent call last)")
    error_lines = [match.group(0) for match in _EXCEPTION_LINE.finditer(text)]
    if not tracebacks and not error_lines:
        return None
    first = error_lines[0] if error_lines else text.strip().splitlines()[0]
    return LogNote(server, path, tracebacks, len(error_lines), first[:300])
