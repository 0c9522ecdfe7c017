"""Run a harness under atheris (libFuzzer for Python), for a while.

Usage::

    python -m fuzzing.run frames|http [--seconds 60] [-- LIBFUZZER_OPTIONS...]

The corpus grows in ``build/fuzz/corpus/<target>/`` (kept between runs); an
input that fails the check is written to ``build/fuzz/crash-<target>-*`` and
the run exits non-zero. Such an input becomes a regression test: copy it to
``fuzzing/regressions/<target>/`` (tests/fuzzing/test_regressions.py replays
every file there). The Python code is instrumented for coverage; the C code is
reached through it and compared, not instrumented.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("frames", "http")


def fuzz(check: Callable[[bytes], None]) -> None:
    """Hand ``check`` to atheris with the command line's libFuzzer options."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz")
    parser.add_argument("libfuzzer", nargs="*", help="more libFuzzer options, after --")
    options = parser.parse_args(argv)
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    corpus = ROOT / "build" / "fuzz" / "corpus" / options.target
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts = ROOT / "build" / "fuzz" / f"crash-{options.target}-"
    with atheris.instrument_imports(include=["portside", "fuzzing"]):
        harness = importlib.import_module(f"fuzzing.{options.target}")
    sys.argv = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={options.seconds}",
        f"-artifact_prefix={artifacts}",
        "-print_final_stats=1",
        "-max_len=4096",
        "-len_control=0",
        *options.libfuzzer,
    ]
    started = time.monotonic()
    print(f"fuzzing {options.target} for {options.seconds} s; corpus {corpus}", flush=True)
    atheris.Setup(sys.argv, harness.check)
    atheris.Fuzz()  # exits the process: non-zero when an input failed the check
    print(f"done in {time.monotonic() - started:.0f} s")  # pragma: no cover
    return 0


if __name__ == "__main__":
    sys.exit(main())
