# Reference leaks (make leaks): Debian's python3-dbg, its own virtualenv and
# build of the C accelerators; refcounts, memory blocks, tracemalloc and RSS
# flat over echo, close, abort, cancellation and error paths, C and pure Python;
# the C code's tests on the debug interpreter.
# minutes: 3  (142 s in the CI run of 2026-12-02)
set -euo pipefail
make leaks
