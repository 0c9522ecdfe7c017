"""Line coverage of the C accelerators (gcov), held at a minimum per extension and per file.

``make ccoverage`` runs this. It builds the ``coverage`` variant of the
extensions (tools/variant.py: ``--coverage -O0``, in ``build/coverage/``, away
from the checkout's own build), runs the test suite with the C accelerators on
asyncio's loop and the asyncio tests again on uvloop (whose transports take
other paths through the C code), then reports gcov's line coverage of each
extension and of each of its C files, with the lines no test ran. It fails when
an extension is under its minimum (95 % of its lines by default), or one of its
files under the minimum per file (90 %).

A line that no test can reach from Python -- a defensive check of a state
that cannot happen, the error return of a call that cannot fail -- may carry a
C comment ``/* ccoverage: unreachable: <why> */``, on the line or alone on the
line before it. The line is then left out of the counts or, when it opens a
block (``if (...) {``), the lines of that block. A marked line that a test
does run fails the check: the marker was wrong. Markers are to be rare; the
report counts them.

Python processes that the tests start (servers in their own process) load the
same build and add their counts when they exit; a process killed with SIGKILL
adds none.

Usage: ``python tools/ccoverage.py [--fail-under 95] [--file-minimum 90]
[--pytest-args ARGS] [--report-only]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import variant

ROOT = variant.ROOT

#: The marker of a line that no test can reach, with the reason why.
MARKER = re.compile(r"/\*\s*ccoverage:\s*unreachable:\s*(?P<reason>.*?)\s*\*/")

#: What a line holds besides code, for counting braces: string and character
#: literals, comments.
NOT_CODE = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|/\*.*?\*/|//.*$')


def code_of(line: str) -> str:
    """The code of a line of C: without literals and comments (on that line)."""
    return NOT_CODE.sub(" ", line).strip()


def unreachable_lines(text: str) -> dict[int, str]:
    """The lines of a C file marked unreachable: {line number: reason}.

    A marker applies to the line it is on or, alone on its line, to the next
    line of code: that line, or the lines of the block it opens when its code
    ends with ``{`` (up to the closing brace; the opening line runs and counts).
    """
    lines = text.splitlines()
    marked: dict[int, str] = {}
    for index, line in enumerate(lines):
        match = MARKER.search(line)
        if match is None:
            continue
        reason = match.group("reason")
        if not reason:
            raise SystemExit(f"line {index + 1}: a ccoverage marker must say why: {line.strip()}")
        target = index
        while target < len(lines) and not code_of(lines[target]):
            target += 1
        if target == len(lines):
            raise SystemExit(f"line {index + 1}: a ccoverage marker with no code after it")
        if not code_of(lines[target]).endswith("{"):
            marked[target + 1] = reason
            continue
        depth = 0
        for inner in range(target, len(lines)):
            code = code_of(lines[inner])
            depth += code.count("{") - code.count("}")
            if inner > target:
                marked[inner + 1] = reason
            if depth <= 0:
                break
        else:
            raise SystemExit(f"line {index + 1}: the block a ccoverage marker opens never ends")
    return marked


@dataclass
class FileCoverage:
    path: str
    lines: int = 0
    covered: int = 0
    missed: list[int] = field(default_factory=list)
    #: Lines marked unreachable, left out of the counts...
    excluded: int = 0
    #: ...and those of them that ran all the same.
    marked_but_run: list[int] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return percent(self.covered, self.lines)


def c_sources() -> dict[str, list[str]]:
    """The C files of each extension, relative to the tree: {extension: files}."""
    return {
        ext.name: sorted({source for source in ext.sources if source.endswith(".c")})
        for ext in sorted(variant.extensions(), key=lambda ext: ext.name)
    }


def gcov(tree: Path, objects: Path, source: str) -> FileCoverage:
    """Run gcov on one source file; parse its annotated copy."""
    obj = objects / Path(source).with_suffix(".o")
    output = objects / "gcov"
    output.mkdir(exist_ok=True)
    subprocess.run(
        ["gcov", "--preserve-paths", "--object-file", str(obj), str(tree / source)],
        cwd=output,
        capture_output=True,
        text=True,
        check=True,
    )
    name = Path(source).name
    annotated = [p for p in output.glob("*.gcov") if p.name.endswith(f"{name}.gcov")]
    annotated = [p for p in annotated if "#" in p.name and source.replace("/", "#") in p.name]
    if not annotated:
        raise SystemExit(f"gcov wrote no annotated copy of {source} (was it run at all?)")
    return count_lines(source, annotated[0].read_text(), (tree / source).read_text())


def count_lines(source: str, annotated: str, text: str) -> FileCoverage:
    """The coverage of one file from gcov's annotated copy and the file's text."""
    coverage = FileCoverage(source)
    unreachable = unreachable_lines(text)
    for line in annotated.splitlines():
        count, number, _ = (part.strip() for part in line.split(":", 2))
        if count == "-" or not number.isdigit() or number == "0":
            continue
        run = not count.startswith(("#####", "====="))
        if int(number) in unreachable:
            coverage.excluded += 1
            if run:
                coverage.marked_but_run.append(int(number))
            continue
        coverage.lines += 1
        if run:
            coverage.covered += 1
        else:
            coverage.missed.append(int(number))
    return coverage


def percent(covered: int, lines: int) -> float:
    return 100.0 * covered / lines if lines else 100.0


def ranges(numbers: list[int]) -> str:
    """1,2,3,7 -> '1-3, 7'."""
    spans: list[str] = []
    start = previous = None
    for number in [*numbers, None]:
        if start is not None and (number is None or number != previous + 1):  # type: ignore[operator]
            spans.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if number is not None and start is None:
            start = number
        previous = number
    return ", ".join(spans)


def step(title: str, command: list[str], env: dict[str, str], cwd: Path) -> bool:
    print(f"\n=== {title}\n$ {shlex.join(command)}", flush=True)
    started = time.monotonic()
    status = subprocess.run(command, env=env, cwd=cwd, check=False).returncode
    print(f"=== {title}: exit status {status}, {time.monotonic() - started:.0f} s", flush=True)
    return status == 0


def report(
    extension: str, files: list[FileCoverage], fail_under: float, file_minimum: float
) -> bool:
    """Print the coverage of an extension and of its files; whether they pass."""
    lines = sum(coverage.lines for coverage in files)
    covered = sum(coverage.covered for coverage in files)
    excluded = sum(coverage.excluded for coverage in files)
    ok = percent(covered, lines) >= fail_under
    print(
        f"{'ok  ' if ok else 'FAIL'} {extension}: {percent(covered, lines):.1f} % "
        f"({covered} of {lines} lines; {excluded} more marked unreachable)"
    )
    for coverage in files:
        low = coverage.percent < file_minimum
        wrong = bool(coverage.marked_but_run)
        ok &= not low and not wrong
        print(
            f"  {'FAIL' if low or wrong else 'ok  '} {coverage.path}: "
            f"{coverage.percent:.1f} % ({coverage.covered} of {coverage.lines} lines"
            + (f"; {coverage.excluded} marked unreachable" if coverage.excluded else "")
            + ")"
        )
        if coverage.missed:
            print(f"       not run: {ranges(coverage.missed)}")
        if wrong:
            print(f"       marked unreachable, but run: {ranges(coverage.marked_but_run)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "build" / "coverage")
    parser.add_argument(
        "--fail-under", type=float, default=95.0, help="percent, per extension (all its files)"
    )
    parser.add_argument("--file-minimum", type=float, default=90.0, help="percent, per file")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments (quoted)")
    parser.add_argument(
        "--report-only", action="store_true", help="report the counts of the last run"
    )
    options = parser.parse_args(argv)
    directory = options.dir.resolve()
    tree, objects = directory / "tree", directory / "obj"
    ok = True
    if not options.report_only:
        tree = variant.build("coverage", sys.executable, directory)
        for counts in objects.rglob("*.gcda"):
            counts.unlink()
        env = dict(os.environ, PYTHONPATH=str(tree))
        env.pop("PORTSIDE_NO_SPEEDUPS", None)
        # Not the tests marked slow (real server processes, a thousand peers):
        # they add minutes and few lines of C.
        pytest = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            *shlex.split(options.pytest_args),
        ]
        ok &= step("test suite, C accelerators, asyncio's loop", pytest, env, tree)
        ok &= step(
            "asyncio tests, C accelerators, uvloop",
            [*pytest, "tests/asyncio", "tests/test_examples.py"],
            dict(env, PORTSIDE_TEST_LOOP="uvloop"),
            tree,
        )
    print(
        f"\nline coverage of the C accelerators (minimum {options.fail_under:g} % per "
        f"extension, {options.file_minimum:g} % per file):"
    )
    for extension, sources in c_sources().items():
        files = [gcov(tree, objects, source) for source in sources]
        ok &= report(extension, files, options.fail_under, options.file_minimum)
    print("ccoverage: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
