# Autobahn, the threading API (portside.sync): groups 1-10, server and client
# modes, with the C accelerator and with the pure-Python code. About 100 s per
# run of both modes on the 2-core machine (group 9's large messages take most).
# minutes: 2  (96 s in the CI run of 2026-12-02)
set -euo pipefail
groups='1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*'
reports="${CI_LOGS:-/tmp}/reports-sync"
.venv/bin/python -m compliance.run --api sync --cases "$groups" --reports "$reports/c"
.venv/bin/python -m compliance.run --api sync --no-speedups --cases "$groups" \
    --reports "$reports/pure"
