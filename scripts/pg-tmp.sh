#!/bin/sh
# scripts/pg-tmp.sh - a throwaway PostgreSQL server for tests, alive as long as its stdin is open.
#
#   pg-tmp.sh BINDIR BASEDIR PORT [PORT...]
#
# Run it as an unprivileged user (postgres refuses root), with BASEDIR an empty directory that
# user owns. It runs `initdb -A trust -U rackboot` in BASEDIR/data and starts the server on
# 127.0.0.1, or $PG_LISTEN (the first PORT it can bind; the socket in BASEDIR; no fsync: test data only), then
# prints one line:
#   ready postgres://rackboot@127.0.0.1:PORT/postgres
#   failed: WHY
# then waits for end of file on stdin, stops the server (fast, else immediate) and removes
# BASEDIR. The Rust tests (src/store/testdb.rs) start it with a pipe on stdin, so the server
# goes when the test process ends, however it ends; every step runs to its end first, so a test
# process killed during initdb leaves nothing behind either. By hand:
#   mkdir /tmp/pg && chown nobody /tmp/pg
#   setpriv --reuid=nobody --regid=nogroup --clear-groups \
#     scripts/pg-tmp.sh /usr/lib/postgresql/15/bin /tmp/pg 55432   # ^D stops it
set -u
# The test process may be gone by the time we print: keep going to the clean-up.
trap '' PIPE
bin=$1 base=$2
shift 2
export LC_ALL=C LANG=C

start() {
  if ! "$bin/initdb" -D "$base/data" -A trust -U rackboot -E UTF8 --no-sync --no-instructions \
      >"$base/initdb.log" 2>&1; then
    echo "failed: initdb: $(tail -n 5 "$base/initdb.log" | tr '\n' ' ')"
    return
  fi
  # Listening on another address (a test's own network namespace): trust its subnets too.
  [ "${PG_LISTEN:-127.0.0.1}" = 127.0.0.1 ] || echo "host all all samenet trust" >>"$base/data/pg_hba.conf"
  why="no port given"
  for port in "$@"; do
    # The server's options, kept in BASEDIR/pg_ctl.opts for a test that stops and starts it again.
    opts="-p $port -k $base -c listen_addresses=${PG_LISTEN:-127.0.0.1} -c max_connections=300 -c fsync=off \
-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB"
    if "$bin/pg_ctl" -D "$base/data" -l "$base/postgres.log" -w -t 60 -o "$opts" start \
        >"$base/pg_ctl.log" 2>&1; then
      printf '%s' "$opts" >"$base/pg_ctl.opts"
      echo "ready postgres://rackboot@${PG_LISTEN:-127.0.0.1}:$port/postgres"
      return
    fi
    why="pg_ctl start on port $port: $(tail -n 5 "$base/postgres.log" "$base/pg_ctl.log" 2>/dev/null | tr '\n' ' ')"
  done
  echo "failed: $why"
}

start "$@"
cat >/dev/null
if [ -e "$base/data/postmaster.pid" ]; then
  "$bin/pg_ctl" -D "$base/data" stop -m fast -w -t 20 >/dev/null 2>&1 ||
    "$bin/pg_ctl" -D "$base/data" stop -m immediate -w -t 10 >/dev/null 2>&1
fi
rm -rf "$base"
