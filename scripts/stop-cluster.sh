#!/usr/bin/env bash
# Stop the local cluster started by scripts/start-cluster.sh (SIGTERM, then SIGKILL after
# 15 s) and, with --clean, remove its folder.
#   scripts/stop-cluster.sh [--clean]      (CLUSTER_DIR as for start-cluster.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
CLUSTER_DIR=${CLUSTER_DIR:-target/cluster}
pids=()
for pidfile in "$CLUSTER_DIR"/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" && pids+=("$pid")
  fi
  rm -f "$pidfile"
done
for _ in $(seq 1 150); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1
done
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; done
echo "stopped ${#pids[@]} node(s)"
if [ "${1:-}" = "--clean" ]; then
  rm -rf "$CLUSTER_DIR"
  echo "removed $CLUSTER_DIR"
fi
