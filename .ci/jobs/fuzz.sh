# Differential fuzzing (make fuzz): the frame reader's C and Python twins, and
# the HTTP parsers fed whole or in chunks, 60 s each under atheris. An input that
# fails is written to build/fuzz/ and the job fails; a longer run:
# make fuzz FUZZ_SECONDS=3600.
# minutes: 3  (135 s in the CI run of 2026-12-02)
set -euo pipefail
make fuzz
