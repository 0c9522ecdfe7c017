# gcov line coverage of the C accelerators (make ccoverage): the suite and the
# asyncio tests on uvloop against a --coverage build in build/coverage; each
# extension must be at 95 % or more, each of its C files at 90 % or more.
# minutes: 2  (102 s in the CI run of 2026-12-02)
set -euo pipefail
make ccoverage
