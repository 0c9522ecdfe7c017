# gcov line coverage of the C accelerators (make ccoverage): the suite and the
# asyncio tests on uvloop against a --coverage build in build/coverage; each C
# file must be at 95 % or more.
# minutes: 5
set -euo pipefail
make ccoverage
