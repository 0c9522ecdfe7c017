"""Time the C accelerator against its pure-Python twin.

Run: ``python bench/micro_speedups.py`` (after building the extension in place).
"""

from __future__ import annotations

import importlib
import os
import timeit
from collections.abc import Callable
from types import ModuleType
from typing import Any

from portside.protocol import _pyspeedups

MASK = b"\x5a\xc3\x0f\x96"


def best(func: Callable[[], object], budget: float = 0.2) -> float:
    """Seconds per call: the best of 5 runs of about ``budget`` seconds each."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(1, int(number * budget / 0.2))
    return min(timer.repeat(5, number)) / number


def mask_case(apply_mask: Callable[[bytes, bytes], bytes], size: int) -> Callable[[], object]:
    data = os.urandom(size)
    return lambda: apply_mask(data, MASK)


def cases(impl: ModuleType) -> dict[str, Callable[[], object]]:
    apply_mask: Any = impl.apply_mask
    encode_frame: Any = impl.encode_frame
    parse_frames: Any = impl.parse_frames
    result: dict[str, Callable[[], object]] = {}
    for size, label in ((256, "256 B"), (2**16, "64 KiB"), (2**20, "1 MiB")):
        result[f"apply_mask {label}"] = mask_case(apply_mask, size)
    payload = os.urandom(256)
    result["encode_frame 256 B masked"] = lambda: encode_frame(0x82, payload, MASK)
    frame = _pyspeedups.encode_frame(0x82, payload, MASK)
    buf = bytearray(frame * 100)
    result["parse_frames 100 x 256 B masked"] = lambda: parse_frames(
        buf, 0, len(buf), True, 2**63 - 1, []
    )
    text = _pyspeedups.encode_frame(0x81, b"x" * 256, MASK)
    tbuf = bytearray(text * 100)
    result["parse_frames 100 x 256 B text"] = lambda: parse_frames(
        tbuf, 0, len(tbuf), True, 2**63 - 1, []
    )
    return result


def main() -> None:
    c = importlib.import_module("portside.protocol._speedups")
    py_cases, c_cases = cases(_pyspeedups), cases(c)
    print(f"{'case':34} {'python':>12} {'C':>12} {'speedup':>8}")
    for name, func in py_cases.items():
        t_py, t_c = best(func), best(c_cases[name])
        print(f"{name:34} {t_py * 1e6:9.2f} us {t_c * 1e6:9.2f} us {t_py / t_c:7.1f}x")


if __name__ == "__main__":
    main()
