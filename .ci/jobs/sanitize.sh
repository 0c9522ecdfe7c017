# The C accelerators under AddressSanitizer and UndefinedBehaviorSanitizer
# (make sanitize): the whole suite on asyncio's loop, the asyncio tests on uvloop,
# Autobahn's groups 1-10 against the server and the client; any report fails.
# minutes: 6
set -euo pipefail
make sanitize
