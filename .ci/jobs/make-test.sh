# The README's test command: lint, types, the suite with the C accelerator and
# without it, the asyncio tests on uvloop, coverage.
# minutes: 4
set -euo pipefail
make test
