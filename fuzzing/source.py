"""Turning a fuzzer's bytes into choices, the same way with or without atheris.

The harnesses draw their choices from :class:`Source` rather than from atheris'
FuzzedDataProvider, so that an input saved by the fuzzer replays byte for byte
in the test suite (tests/fuzzing/test_regressions.py), where atheris may not be
installed.
"""

from __future__ import annotations


class Source:
    """Reads choices from the front of ``data``; zeros once it is exhausted."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def integer(self, limit: int) -> int:
        """An integer in ``range(limit)``, from as many bytes as ``limit`` needs."""
        if limit <= 1:
            return 0
        value = 0
        for _ in range((limit.bit_length() + 7) // 8):
            value = (value << 8) | self.byte()
        return value % limit

    def boolean(self) -> bool:
        return bool(self.byte() & 1)

    def choice(self, options: list[int] | tuple[int, ...]) -> int:
        return options[self.integer(len(options))]

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)
