"""The fuzzers' checks, replayed: every saved input, and a few hundred random ones.

An input that ever made a harness of fuzzing/ fail (a crash, or the C and
Python twins diverging) is saved under ``fuzzing/regressions/<target>/`` and
replayed here, with or without atheris installed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzzing import frames, http

REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzzing" / "regressions"
CHECKS: dict[str, Callable[[bytes], None]] = {"frames": frames.check, "http": http.check}

saved = sorted((target, path) for target in CHECKS for path in (REGRESSIONS / target).glob("*"))


@pytest.mark.parametrize(("target", "path"), saved, ids=[f"{t}/{p.name}" for t, p in saved])
def test_saved_input(target: str, path: Path) -> None:
    CHECKS[target](path.read_bytes())


@pytest.mark.parametrize("target", sorted(CHECKS))
def test_random_inputs(target: str) -> None:
    rng = random.Random(f"portside-{target}")
    for _ in range(150):
        CHECKS[target](rng.randbytes(rng.randrange(600)))


def test_the_twins_are_both_there() -> None:
    # Without the C extension the frame check compares nothing; make test
    # builds it, so its absence here is a broken build, not a skip.
    from portside.protocol import speedups

    if speedups.IMPLEMENTATION == "c":
        assert len(frames.READERS) == 2
