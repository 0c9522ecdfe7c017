# Every supported CPython beside the default one (3.11, which `make test` runs):
# 3.10, 3.12 and 3.13, each in a virtualenv of its own (.venv-3.X), installed as
# the README says (`make install PYTHON=...`). For each: both C accelerators
# must load, then the suite runs with them, again in pure Python
# (PORTSIDE_NO_SPEEDUPS=1; the tests marked slow run once, as in make test), and
# the asyncio tests again on uvloop. Every step runs even if one fails; the job
# fails at the end if any did.
#
# Interpreters are looked for in pyenv ($(pyenv root)/versions/3.X.*, the newest
# patch release), then as python3.X on PATH (Debian's packages, or any other).
# A version that is missing is skipped with a message, and fails the job under
# CI=true. PYTHON_MATRIX="3.12 3.13" runs those versions only.
# minutes: 25  (1069 s in the CI run of 2026-12-02 with 3.13 stopping early; 2194 s with all of 3.13 on a machine loaded by other work besides the other CI jobs)
set -euo pipefail
cd "$(dirname "$0")/../.."

versions="${PYTHON_MATRIX:-3.10 3.12 3.13}"
start=$(date +%s)
say() { printf '[python-matrix %4ds] %s\n' "$(( $(date +%s) - start ))" "$*"; }

# The interpreter of version $1 (3.X): its path, or nothing.
find_python() {
    local version=$1 candidate found=""
    if command -v pyenv >/dev/null 2>&1; then
        # The newest patch release: sorted by version, not by name.
        found=$(for candidate in "$(pyenv root)/versions/$version".*/bin/python; do
            [ -x "$candidate" ] && echo "$candidate"
        done | sort -V | tail -n 1)
    fi
    if [ -z "$found" ] && command -v "python$version" >/dev/null 2>&1; then
        found=$(command -v "python$version")
    fi
    # It must run, and be that version (a pyenv shim may name a missing one).
    if [ -n "$found" ] && [ "$("$found" -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
        2>/dev/null)" = "$version" ]; then
        echo "$found"
    fi
}

declare -A python=()
missing=()
ran=()
for version in 3.10 3.11 3.12 3.13; do
    found=$(find_python "$version")
    if [ -n "$found" ]; then
        python[$version]=$found
        say "found Python $version: $found ($("$found" -c 'import platform; print(platform.python_version())'))"
    else
        missing+=("$version")
        say "Python $version: not found (pyenv install $version; or python$version on PATH, with its headers and venv module)"
    fi
done

failed=()
# Run a step; a failure is recorded and the next step runs: one CI run shows them all.
step() {  # step VERSION DESCRIPTION COMMAND...
    local version=$1 description=$2
    shift 2
    say "Python $version: $description"
    if ! "$@"; then
        failed+=("$version: $description")
        say "Python $version: FAILED: $description"
        return 1
    fi
}

for version in $versions; do
    interpreter=${python[$version]:-}
    [ -n "$interpreter" ] || continue
    venv=".venv-$version"
    step "$version" "make install VENV=$venv PYTHON=$interpreter" \
        make install VENV="$venv" PYTHON="$interpreter" || continue
    step "$version" "both C accelerators load" "$venv/bin/python" -c '
import sys
import portside.asyncio.speedups as a
import portside.protocol.speedups as p
loaded = {"portside.protocol": p.IMPLEMENTATION, "portside.asyncio": a.IMPLEMENTATION}
print(loaded)
sys.exit(0 if set(loaded.values()) == {"c"} else "a C accelerator did not load (see the warning above)")
' || true
    # As make test runs them: the tests marked slow (real server processes) once.
    step "$version" "the suite with the C accelerators" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider || true
    step "$version" "the suite in pure Python (not the slow tests)" \
        env PORTSIDE_NO_SPEEDUPS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        -m "not slow" || true
    if "$venv/bin/python" -c 'import uvloop' 2>/dev/null; then
        step "$version" "the asyncio tests on uvloop" \
            env PORTSIDE_TEST_LOOP=uvloop "$venv/bin/python" -m pytest -q -p no:cacheprovider \
            tests/asyncio tests/test_examples.py || true
    else
        say "Python $version: uvloop does not install here; its run is skipped"
    fi
    ran+=("$version")
done

status=0
if [ "${#missing[@]}" -gt 0 ]; then
    say "missing: Python ${missing[*]}"
    if [ "${CI:-}" = true ]; then
        say "FAILED: under CI=true every supported version (3.10 to 3.13) must be there"
        status=1
    fi
fi
if [ "${#failed[@]}" -gt 0 ]; then
    for failure in "${failed[@]}"; do
        say "FAILED: Python $failure"
    done
    status=1
fi
say "done: Python ${ran[*]:-(none)}, $([ "$status" = 0 ] && echo passed || echo with failures)"
exit "$status"
