#!/usr/bin/env bash
# A throw-away PostgreSQL 15 server for the tests (Debian's postgresql-15).
#
#   pg_server.sh start DIR   initdb into DIR/data as the postgres user, start it
#                            with its unix socket in DIR and TCP on 127.0.0.1 at a
#                            free port; writes the port to DIR/port
#   pg_server.sh start DIR PID   the same, and stops it when process PID ends
#                            (a test process that crashed cannot leave it behind);
#                            PID "parent": the caller (ctest, for its fixture)
#   pg_server.sh stop DIR    stops it (immediately) and removes DIR
#
# PostgreSQL refuses to run as root, hence the postgres user. Authentication
# is `trust` (the socket directory is the server's alone and TCP is loopback),
# but for the role orch_pw over TCP, whose password is "right-password".
set -euo pipefail

cmd=${1:?start|stop}
dir=${2:?directory}
bin=${ORCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$bin/initdb" ] || { echo "pg_server.sh: no PostgreSQL server found (apt install postgresql-15)" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

case $cmd in
start)
  if [ -f "$dir/port" ] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    exit 0  # already running (a fixture started it)
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  chown postgres: "$dir"
  chmod 0700 "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  # One role that must give its password over TCP, for the refused-login tests.
  sed -i '1i host all orch_pw 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
  # fsync off: a test server, thrown away at the end. ORCH_PG_DURABLE=1
  # (benchmarks) keeps PostgreSQL's durable defaults.
  durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${ORCH_PG_DURABLE:-0}" = 1 ] && durability="-c shared_buffers=256MB"
  # The port is free when picked but may be taken before the server binds
  # it (another test starting one): then try another.
  for try in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
      "-k $dir -p $port -c listen_addresses=127.0.0.1 -c max_connections=300 \
       -c shared_buffers=32MB $durability" >/dev/null; then
      break
    fi
    [ "$try" = 5 ] && { cat "$dir/server.log" >&2; exit 1; }
  done
  "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE orch_pw LOGIN PASSWORD 'right-password'" >/dev/null
  echo "$port" >"$dir/port.tmp"
  mv "$dir/port.tmp" "$dir/port"
  if [ -n "${3:-}" ]; then
    owner=$3
    [ "$owner" = parent ] && owner=$PPID
    setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; '$0' stop '$dir'" \
      </dev/null >/dev/null 2>&1 &
  fi
  ;;
stop)
  if [ -d "$dir/data" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: pg_server.sh start|stop DIR" >&2
  exit 2
  ;;
esac
