# Reference leaks (make leaks): Debian's python3-dbg, its own virtualenv and
# build of the C accelerators; refcounts, memory blocks, tracemalloc and RSS
# flat over echo, close, abort, cancellation and error paths, C and pure Python;
# the C code's tests on the debug interpreter.
# minutes: 7
set -euo pipefail
make leaks
