# gcov line coverage of the C accelerators (make ccoverage): the suite and the
# asyncio tests on uvloop against a --coverage build in build/coverage; each
# extension must be at 95 % or more, each of its C files at 90 % or more.
# minutes: 5
set -euo pipefail
make ccoverage
