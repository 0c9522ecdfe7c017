"""Run the suite and Autobahn against the C accelerators built with ASan and UBSan.

``make sanitize`` runs this. It builds the ``sanitize`` variant of the
extensions (tools/variant.py: ``-fsanitize=address,undefined``, recoverable,
without ``-O3 -DNDEBUG -fwrapv``) in ``build/sanitize/``, then runs, with
``PYTHONMALLOC=malloc`` so that every Python allocation goes through ASan:

1. the whole test suite with the C accelerators on asyncio's loop;
2. the asyncio tests again on uvloop (where the accelerator reads and writes
   the socket itself);
3. Autobahn's groups 1 to 10 against the server and against the client.

The sanitizers report to files rather than stopping the process (a report does
not hide the next one). Any report fails the run, printed whole at the end, and
so does a failed test or Autobahn case. The interpreter itself is not built with
ASan: its runtime is preloaded by ``build/sanitize/bin/python``.

Usage: ``python tools/sanitize.py [--skip-autobahn] [--pytest-args ARGS]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import variant

ROOT = variant.ROOT
GROUPS = ",".join(f"{group}.*" for group in range(1, 11))

# What makes a file a sanitizer report, not a warning (ASan warns, for one, when
# allocator_may_return_null lets an impossible allocation return NULL).
REPORT_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    ": runtime error: ",  # UBSan: file:line:column: runtime error: ...
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
)


def reports(directory: Path) -> tuple[list[Path], list[Path]]:
    """The files of ``directory`` with a report, and those with warnings only.

    ``asan.<pid>`` files are ASan's logs, ``ubsan-<extension>.<pid>`` UBSan's.
    """
    found: list[Path] = []
    warnings: list[Path] = []
    for path in sorted(directory.glob("*")):
        text = path.read_text(errors="replace")
        if any(marker in text for marker in REPORT_MARKERS):
            found.append(path)
        elif text:
            warnings.append(path)
    return found, warnings


# Errors of both kinds in the order that lost reports with GCC's two shared
# runtimes, to show that every report is collected.
CANARY_C = """
#include <stdlib.h>
int signed_overflow(int x) { return x + 1; }
int heap_overflow(void) {
    char *p = malloc(16);
    volatile int i = 16;
    p[i] = 1;
    int r = p[0];
    free(p);
    return r;
}
int shift_overflow(int x) { return x << 31; }
"""
CANARY_PY = """
import ctypes, sys
canary = ctypes.CDLL(sys.argv[1])
canary.signed_overflow(2**31 - 1)
canary.heap_overflow()
canary.shift_overflow(2)
"""


def check_canary(directory: Path, python: str) -> bool:
    """Make sure that the sanitizers report, and that their reports are found."""
    source, library = directory / "canary.c", directory / "canary.so"
    source.write_text(CANARY_C)
    options = variant.ubsan_options_source(directory, "canary")
    compile_flags, link_flags = variant.FLAGS["sanitize"]
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            *compile_flags,
            *link_flags,
            "-o",
            str(library),
            str(source),
            options,
        ],
        check=True,
    )
    canary_reports = directory / "canary-reports"
    shutil.rmtree(canary_reports, ignore_errors=True)
    env = dict(os.environ, PORTSIDE_SANITIZER_REPORTS=str(canary_reports))
    subprocess.run([python, "-c", CANARY_PY, str(library)], env=env, check=False)
    found, _ = reports(canary_reports)
    text = "".join(path.read_text() for path in found)
    seen = {
        "heap overflow": "ERROR: AddressSanitizer: heap-buffer-overflow" in text,
        "signed overflow": "runtime error: signed integer overflow" in text,
        "shift overflow": "runtime error: left shift" in text,
    }
    print(
        "canary:",
        ", ".join(f"{name} {'reported' if ok else 'MISSED'}" for name, ok in seen.items()),
    )
    return all(seen.values())


def step(title: str, command: list[str], env: dict[str, str], cwd: Path) -> bool:
    print(f"\n=== {title}\n$ {shlex.join(command)}", flush=True)
    started = time.monotonic()
    status = subprocess.run(command, env=env, cwd=cwd, check=False).returncode
    print(f"=== {title}: exit status {status}, {time.monotonic() - started:.0f} s", flush=True)
    return status == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "build" / "sanitize")
    parser.add_argument("--skip-autobahn", action="store_true", help="the test suite only")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments (quoted)")
    options = parser.parse_args(argv)
    directory = options.dir.resolve()
    tree = variant.build("sanitize", sys.executable, directory)
    python = str(directory / "bin" / "python")
    report_dir = directory / "reports"
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)

    if not check_canary(directory, python):
        print("sanitize: FAILED (the canary's errors were not reported: reports would be missed)")
        return 1

    env = dict(os.environ)
    env.pop("PORTSIDE_NO_SPEEDUPS", None)
    env["PORTSIDE_SANITIZER_REPORTS"] = str(report_dir)
    # Instrumented code runs a few times slower: more time per async test.
    env.setdefault("PORTSIDE_TEST_TIMEOUT", "120")
    # Not the tests marked slow: real server processes with timing criteria
    # (a worker replaced within a second...) and a thousand peers, which ASan
    # makes several times slower; they take the same paths through the C code
    # as the rest of the suite.
    pytest = [
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "not slow",
        *shlex.split(options.pytest_args),
    ]
    ok = step("test suite, C accelerators, asyncio's loop", pytest, env, tree)
    uvloop_env = dict(env, PORTSIDE_TEST_LOOP="uvloop")
    ok &= step(
        "asyncio tests, C accelerators, uvloop",
        [*pytest, "tests/asyncio", "tests/test_examples.py"],
        uvloop_env,
        tree,
    )
    if not options.skip_autobahn:
        for mode in ("server", "client"):
            ok &= step(
                f"Autobahn groups 1-10, {mode} mode",
                [
                    sys.executable,
                    "-m",
                    "compliance.run",
                    "--mode",
                    mode,
                    "--cases",
                    GROUPS,
                    "--python",
                    python,
                    "--cache",
                    str(ROOT / ".autobahn"),
                    "--reports",
                    str(directory / "autobahn" / mode),
                ],
                env,
                tree,
            )

    found, warnings = reports(report_dir)
    if warnings:
        # Such as "failed to allocate 0x4000000000000001 bytes": tests of
        # MemoryError, which allocator_may_return_null turns into NULL.
        lines = {line for path in warnings for line in path.read_text().splitlines()}
        print(f"\n{len(warnings)} files of warnings, not reports; their lines:")
        for line in sorted({line.split("==", 2)[-1] for line in lines}):
            print("   ", line)
    for path in found:
        print(f"\n--- {path.name}\n{path.read_text(errors='replace')}")
    print(f"\nsanitizer reports: {len(found)} (in {report_dir})")
    if found or not ok:
        print("sanitize: FAILED" + (" (reports above)" if found else " (a step failed)"))
        return 1
    print("sanitize: passed, no report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
