# The README's test command: lint, types, the suite with the C accelerator and
# without it, the asyncio tests on uvloop, coverage.
# minutes: 5  (301 s in the CI run of 2026-12-02, beside the other jobs)
set -euo pipefail
make test
