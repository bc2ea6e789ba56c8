#!/usr/bin/env bash
# The status page's requests on a store of 200,000 jobs (SQLite on tmpfs):
# the median of 20 curl calls each. Usage: bench/ui_requests.sh [binary]
set -euo pipefail
bin=${1:-build/orchestrator}
d=$(mktemp -d /dev/shm/uibench-XXXX)
cat > $d/o.toml <<T
[server]
listen = "127.0.0.1:18093"
token_file = ""
[store]
path = "$d/q.db"
[cgroup]
mode = "off"
T
$bin serve --config $d/o.toml > $d/log 2>&1 & pid=$!
sleep 1; kill $pid; wait $pid || true
now=$(($(date +%s)*1000))
sqlite3 $d/q.db <<S
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000)
INSERT INTO jobs(name, argv, status, serial_key, created_at, updated_at, finished_at, outcome)
SELECT 'job-' || i || CASE WHEN i % 1000 = 0 THEN '-nightly' ELSE '' END, '["true"]',
       'succeeded', CASE WHEN i % 100 = 0 THEN 'k' || (i % 7) END, $now, $now, $now, 'succeeded' FROM n;
S
$bin serve --config $d/o.toml > $d/log 2>&1 & pid=$!
sleep 1
t() {  # median of 20 requests, ms
  for i in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:18093$1"; done |
    sort -n | awk '{a[NR]=$1} END {printf "%-60s %.1f ms\n", "'"$1"'", a[int(NR/2)+1]*1000}'
}
t '/healthz'
t '/queue'
t '/jobs?order=desc&limit=50'
t '/jobs?status=failed&order=desc&limit=10'
t '/jobs?serial_key=k3&order=desc&limit=50'
t '/jobs?name=nightly&order=desc&limit=50'
t '/jobs?status=succeeded&name=no-such-name&order=desc&limit=50'
t '/stats?minutes=60'
t '/'
kill $pid; wait $pid || true
rm -rf $d
