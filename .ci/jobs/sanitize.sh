# The C accelerators under AddressSanitizer and UndefinedBehaviorSanitizer
# (make sanitize): the whole suite on asyncio's loop, the asyncio tests on uvloop,
# Autobahn's groups 1-10 against the server and the client; any report fails.
# minutes: 4  (227 s in the CI run of 2026-12-02)
set -euo pipefail
make sanitize
