#!/usr/bin/env bash
# The Postgres archive, measured (issue #11; PERF.md "Archive"):
#
#   1. the bulk path: `cargo bench --bench archive_insert` (UNNEST arrays vs COPY into a
#      staging table, alternating rounds, rows/s and the ratio);
#   2. one node at its peak append rate for BENCH_ARCHIVE_SECS, twice side by side: archive
#      off, then archive on (flush interval 1000 ms). For the second: appended events/s,
#      rows/s Postgres confirmed during the run, the lag at the end, and how long the
#      archive then takes to drain it.
#
#   bash scripts/bench-archive.sh          # results in target/bench-results/archive-<time>/
#
# Postgres: DATABASE_URL if set, else a throwaway server (Debian's binaries, initdb in a
# temporary folder as the postgres user, port 55499), stopped at the end. Needs root for
# the throwaway server and for glommio's locked memory. Loopback only; everything it starts
# it stops (trap).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$REPO/target/bench-results/archive-$STAMP}
DATA=$REPO/target/bench-data/archive-$STAMP
SECS=${BENCH_ARCHIVE_SECS:-20}
PORT=4077
mkdir -p "$OUT" "$DATA"

pids=()
pg_dir=
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$pg_dir" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

if [ -z "${DATABASE_URL:-}" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pg_dir=$(mktemp -d /tmp/starcite-bench-pg.XXXXXX)
  chown postgres:postgres "$pg_dir"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$pg_dir/data" -A trust -U postgres -E UTF8 >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -o "-p 55499 -k $pg_dir -c listen_addresses=127.0.0.1" \
    -l "$pg_dir/log" -w start >/dev/null
  DATABASE_URL=postgres://postgres@127.0.0.1:55499/postgres
fi

echo "== build (release)"
cargo build --release -p starcite -p starcite-bench 2>&1 | tail -1

{
  echo "# Archive benchmark, $STAMP"
  echo
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
  echo "postgres: $(psql "$DATABASE_URL" -tAc 'SHOW server_version' 2>/dev/null || echo '?')"
  echo
  echo "## Bulk path"
  echo '```'
  STARCITE_BENCH_DATABASE_URL=$DATABASE_URL cargo bench --bench archive_insert 2>/dev/null
  echo '```'
} | tee "$OUT/summary.md"

metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }

# One node, fresh data dir; $1 = on|off.
run_node() {
  local dir=$DATA/$1
  mkdir -p "$dir"
  STARCITE_RAFT_DATA_DIR=$dir PORT=$PORT STARCITE_ARCHIVER_ENABLED=$1 DATABASE_URL=$DATABASE_URL \
    STARCITE_ARCHIVE_FLUSH_INTERVAL_MS=1000 "$TARGET/release/starcite" 2>"$OUT/node-$1.log" &
  pids+=($!)
  node_pid=$!
  for _ in $(seq 200); do curl -sf "127.0.0.1:$PORT/health/ready" >/dev/null && return; sleep 0.1; done
  echo "node did not get ready" >&2
  exit 1
}

for archive in off on; do
  [ "$archive" = on ] && psql "$DATABASE_URL" -qc 'DROP TABLE IF EXISTS events' 2>/dev/null || true
  run_node $archive
  before=$(metric starcite_archive_inserted_total)
  start=$(date +%s.%N)
  "$TARGET/release/starcite-bench" append --addr "127.0.0.1:$PORT" -c 64 -d 4 --sessions 64 --duration-secs "$SECS" \
    --server-pid "$node_pid" --json "$OUT/append-archive-$archive.json" >"$OUT/append-archive-$archive.txt"
  elapsed=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
  after=$(metric starcite_archive_inserted_total)
  lag=$(metric starcite_archive_lag)
  rate=$(python3 -c "import json; print(round(json.load(open('$OUT/append-archive-$archive.json'))['throughput_ops_per_sec']))" 2>/dev/null || echo '?')
  drain=0
  if [ "$archive" = on ]; then
    drain_start=$(date +%s.%N)
    for _ in $(seq 1200); do [ "$(metric starcite_archive_pending_rows)" = 0 ] && break; sleep 0.1; done
    drain=$(python3 -c "print(round($(date +%s.%N) - $drain_start, 2))")
  fi
  {
    echo
    echo "## Append peak, archive $archive ($SECS s, 64 connections × 4 in flight, 64 sessions, 256-byte payloads)"
    echo
    echo "- appends acknowledged: $rate events/s"
    if [ "$archive" = on ]; then
      echo "- archive rows confirmed during the run: $(python3 -c "print(round(($after - $before) / $elapsed))") rows/s (wall time of the bench process, warm-up and drain included: $elapsed s)"
      echo "- lag when the load stopped: $lag events; drained in $drain s"
      echo "- rows in Postgres: $(psql "$DATABASE_URL" -tAc 'SELECT count(*) FROM events')"
    fi
  } | tee -a "$OUT/summary.md"
  kill -TERM "$node_pid"
  wait "$node_pid" 2>/dev/null || true
done
echo "results: $OUT"
