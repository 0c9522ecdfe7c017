# gcov line coverage of the C accelerators (make ccoverage): the suite and the
# asyncio tests on uvloop against a --coverage build in build/coverage; each C
# file must be at 95 % or more.
# minutes: 2  (102 s in the CI run of 2026-12-02)
set -euo pipefail
make ccoverage
