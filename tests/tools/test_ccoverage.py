"""tools/ccoverage.py: the lines it counts, the markers it honours, what fails it."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from typing import Any

import pytest

TOOLS = pathlib.Path(__file__).resolve().parents[2] / "tools"


def load_tool() -> Any:
    sys.path.insert(0, str(TOOLS))
    try:
        spec = importlib.util.spec_from_file_location("ccoverage", TOOLS / "ccoverage.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["ccoverage"] = module  # for its dataclasses
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TOOLS))
    return module


ccoverage = load_tool()

SOURCE = """\
static int
f(PyObject *x)
{
    PyObject *y = PyLong_FromLong(-1); /* ccoverage: unreachable: a small int */
    /* ccoverage: unreachable: a block, with braces in a string: "{" */
    if (y == NULL) {
        if (x) {
            PyErr_SetString(PyExc_ValueError, "}}");
        }
        return -1;
    }
    /* ccoverage: unreachable: the next line of code, after a blank one */

    return 0;
}
"""


def gcov_copy(counts: dict[int, str]) -> str:
    """gcov's annotated copy of SOURCE: each line's count, '-' where no code."""
    lines = ["        -:    0:Source:f.c"]
    for number, text in enumerate(SOURCE.splitlines(), 1):
        lines.append(f"{counts.get(number, '-'):>9}:{number:>5}:{text}")
    return "\n".join(lines) + "\n"


def test_markers_exclude_a_line_or_the_block_it_opens() -> None:
    marked = ccoverage.unreachable_lines(SOURCE)
    assert sorted(marked) == [4, 7, 8, 9, 10, 11, 14]
    assert marked[4] == "a small int"
    assert marked[8] == 'a block, with braces in a string: "{"'


@pytest.mark.parametrize(
    "source",
    [
        "    return 0; /* ccoverage: unreachable: */\n",
        "    /* ccoverage: unreachable: nothing after it */\n\n",
        "    /* ccoverage: unreachable: a block never closed */\n    if (x) {\n        y();\n",
    ],
    ids=["no-reason", "no-code", "open-block"],
)
def test_bad_markers_are_refused(source: str) -> None:
    with pytest.raises(SystemExit, match="line 1"):
        ccoverage.unreachable_lines(source)


def test_marked_lines_are_left_out_of_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    counts = {3: "1", 4: "1", 6: "1", 7: "#####", 8: "#####", 10: "#####", 14: "#####"}
    coverage = ccoverage.count_lines("f.c", gcov_copy(counts), SOURCE)
    # Run: lines 3 and 6; marked: 4 (run all the same), 7, 8, 10, 14.
    assert (coverage.lines, coverage.covered, coverage.missed) == (2, 2, [])
    assert coverage.excluded == 5
    assert coverage.marked_but_run == [4]
    # A marker on a line that runs is wrong: the check fails.
    assert not ccoverage.report("ext", [coverage], 95, 90)
    assert "marked unreachable, but run: 4" in capsys.readouterr().out


def test_minimum_per_extension_and_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    def file(path: str, covered: int, lines: int) -> Any:
        return ccoverage.FileCoverage(path, lines, covered, list(range(lines - covered)))

    # 91 % and 100 %: each file at 90 % or more, the extension at 96.5 %.
    files = [file("a.c", 91, 100), file("b.c", 250, 250)]
    assert ccoverage.report("ext", files, 95, 90)
    # A file under 90 %, the extension still above 95 %.
    files = [file("a.c", 89, 100), file("b.c", 1000, 1000)]
    assert not ccoverage.report("ext", files, 95, 90)
    # Every file at 90 % or more, the extension under 95 %.
    files = [file("a.c", 91, 100), file("b.c", 92, 100)]
    assert not ccoverage.report("ext", files, 95, 90)
    out = capsys.readouterr().out
    assert "FAIL ext: 91.5 % (183 of 200 lines; 0 more marked unreachable)" in out
