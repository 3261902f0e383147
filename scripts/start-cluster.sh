#!/usr/bin/env bash
# Start a local 5-node Starcite cluster (SPEC §7): HTTP ports 4000–4004, cluster ports
# 4100–4104, every node's data dir, log and pid under one folder. Waits until every node
# answers /health/ready 200, or exits non-zero naming the node that did not.
#
#   scripts/start-cluster.sh            # build (release, cargo decides if needed), start, wait
#   CLUSTER_DIR=/path NODES=3 scripts/start-cluster.sh
#
# Environment: CLUSTER_DIR (default target/cluster; must be a filesystem with O_DIRECT,
# not tmpfs), NODES (default 5), STARCITE_BIN (a binary to use instead of building
# target/release/starcite), STARCITE_CORES per node (default 1), STARCITE_SHARDS (default 256),
# SECRET_KEY_BASE (default: a fixed development secret), READY_TIMEOUT_S (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER_DIR=${CLUSTER_DIR:-target/cluster}
NODES=${NODES:-5}
BIN=${STARCITE_BIN:-}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-60}
export STARCITE_CORES=${STARCITE_CORES:-1}
export STARCITE_SHARDS=${STARCITE_SHARDS:-256}
export SECRET_KEY_BASE=${SECRET_KEY_BASE:-development-only-secret-key-base-change-me-0123456789}

if [ -z "$BIN" ]; then
  # Always through cargo (a no-op when up to date): a binary left from an older checkout
  # would otherwise join the cluster with another protocol.
  cargo build --release --locked --bin starcite >&2
  BIN=target/release/starcite
fi
mkdir -p "$CLUSTER_DIR"
NCPU=$(nproc)
members=""
for i in $(seq 1 "$NODES"); do
  members="${members:+$members,}starcite-$i@127.0.0.1:$((4099 + i))"
done
for i in $(seq 1 "$NODES"); do
  pidfile="$CLUSTER_DIR/starcite-$i.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "starcite-$i already running (pid $(cat "$pidfile"))" >&2
    continue
  fi
  mkdir -p "$CLUSTER_DIR/starcite-$i"
  # Nodes sharing a host take turns over its CPUs (each pins its executors inside its
  # affinity mask), instead of all pinning to CPU 0.
  cpus=$(( (i - 1) * STARCITE_CORES % NCPU ))-$(( ((i - 1) * STARCITE_CORES + STARCITE_CORES - 1) % NCPU ))
  [ "$STARCITE_CORES" -ge "$NCPU" ] && cpus=0-$((NCPU - 1))
  case $cpus in *-*) lo=${cpus%-*}; hi=${cpus#*-}; [ "$lo" -gt "$hi" ] && cpus=0-$((NCPU - 1)) ;; esac
  NODE_NAME="starcite-$i" CLUSTER_NODES="$members" PORT=$((3999 + i)) \
    STARCITE_RAFT_DATA_DIR="$CLUSTER_DIR/starcite-$i/data" \
    nohup taskset -c "$cpus" "$BIN" >>"$CLUSTER_DIR/starcite-$i.log" 2>&1 &
  echo $! >"$pidfile"
done
deadline=$((SECONDS + READY_TIMEOUT_S))
for i in $(seq 1 "$NODES"); do
  port=$((3999 + i))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ]; do
    if ! kill -0 "$(cat "$CLUSTER_DIR/starcite-$i.pid")" 2>/dev/null; then
      echo "starcite-$i exited; last lines of $CLUSTER_DIR/starcite-$i.log:" >&2
      tail -n 20 "$CLUSTER_DIR/starcite-$i.log" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "starcite-$i (port $port) not ready within ${READY_TIMEOUT_S}s: $(curl -s "http://127.0.0.1:$port/health/ready")" >&2
      exit 1
    fi
    sleep 0.2
  done
done
echo "cluster of $NODES nodes ready: HTTP 4000-$((3999 + NODES)), cluster 4100-$((4099 + NODES)), data and logs in $CLUSTER_DIR"
