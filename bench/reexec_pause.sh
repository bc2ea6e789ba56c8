#!/usr/bin/env bash
# The re-exec's pause with N running jobs (default 1,000 `sleep`s): how long
# the event loop stands still, from the old image's last turn to the new
# one's first (orchestrator_last_handover_pause_seconds), and the whole
# re-exec from SIGUSR2 to the new image's first turn (self-check and
# settling included; from the daemon's log), over 5 re-execs.
# Usage: bench/reexec_pause.sh [binary] [jobs]
set -euo pipefail
bin=$(realpath "${1:-build/orchestrator}")
n=${2:-1000}
ulimit -n "$(ulimit -Hn)"  # 4 fds per running job
d=$(mktemp -d /dev/shm/reexecbench-XXXX)
cat > $d/o.toml <<T
[server]
listen = "127.0.0.1:18094"
token_file = ""
[store]
path = "$d/q.db"
[supervisor]
max_concurrency = $n
log_dir = "$d/logs"
[cgroup]
mode = "off"
T
$bin serve --config $d/o.toml > $d/log 2>&1 & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf $d' EXIT
url=http://127.0.0.1:18094
until curl -sf $url/readyz >/dev/null; do sleep 0.1; done
for i in $(seq $n); do echo '{"argv":["sleep","600"]}'; done |
  xargs -d '\n' -P8 -I BODY curl -sf -o /dev/null -H 'Content-Type: application/json' \
    --data-raw BODY $url/jobs
running() { curl -s $url/queue | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["running"])'; }
until [ "$(running)" = "$n" ]; do sleep 0.5; done
incarnation() { curl -s $url/queue | python3 -c 'import json,sys; print(json.load(sys.stdin)["supervisor"]["incarnation"])'; }
echo "re-exec with $n running jobs ($(nproc) cores):"
for i in 1 2 3 4 5; do
  before=$(incarnation)
  kill -USR2 $pid
  until [ "$(incarnation)" != "$before" ]; do sleep 0.01; done
  pause=$(curl -s $url/metrics | awk '/^orchestrator_last_handover_pause_seconds/ {print $2 * 1000}')
  whole=$(python3 - $d/log <<'P'
import sys, datetime
t = lambda l: datetime.datetime.fromisoformat(l.split()[0].rstrip('Z'))
lines = open(sys.argv[1]).read().splitlines()
asked = [t(l) for l in lines if 're-exec requested' in l][-1]
done = [t(l) for l in lines if 're-exec done' in l][-1]
print((done - asked).total_seconds() * 1000)
P
)
  printf '  #%d  loop paused %6.1f ms   SIGUSR2 -> first turn of the new image %6.1f ms\n' \
    $i "$pause" "$whole"
done
echo "  still running: $(running) of $n; continued: $(curl -s $url/metrics | awk '/^orchestrator_runs_continued_total/ {print $2}')"
