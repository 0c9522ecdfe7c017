# Autobahn, client mode: every case (groups 1-10 and the permessage-deflate groups
# 12 and 13) with the C accelerator, then groups 1-10 with the pure-Python code and
# on uvloop (where the accelerator writes on the socket itself).
# minutes: 13  (738 s in the CI run of 2026-12-02, beside the other jobs)
set -euo pipefail
groups='1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*'
reports="${CI_LOGS:-/tmp}/reports-client"
.venv/bin/python -m compliance.run --mode client --reports "$reports/c"
.venv/bin/python -m compliance.run --mode client --no-speedups --cases "$groups" \
    --reports "$reports/pure"
.venv/bin/python -m compliance.run --mode client --loop uvloop --cases "$groups" \
    --reports "$reports/uvloop"
