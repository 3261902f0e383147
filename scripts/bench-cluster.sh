#!/usr/bin/env bash
# The cluster's cost next to one node, in one run (PERF.md, "Cluster"): the same append
# load (closed loop, then open loop at a fixed rate) against a single node and against a
# 3-node local cluster (every node STARCITE_CORES=1, the load sent to node 1, which
# forwards what it does not lead), plus the cluster bytes sent per appended event and the
# idle CPU of each setup. Everything runs on this host: the generator, and all nodes.
#   scripts/bench-cluster.sh [SECONDS]       (default 10 per run; results in target/bench-cluster/)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RATE=${RATE:-3000}
OUT=target/bench-cluster
mkdir -p "$OUT"
cargo build --release --locked -p starcite -p starcite-bench >&2
BENCH=target/release/starcite-bench
export STARCITE_CORES=1 STARCITE_SHARDS=256

cpu_ms() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat"; }
idle_cpu() { # PIDS... -> percent of a core per process over 10 s
  local before=() after=() i=0
  for p in "$@"; do before+=("$(cpu_ms "$p")"); done
  sleep 10
  for p in "$@"; do after+=("$(cpu_ms "$p")"); done
  for p in "$@"; do echo "$(( (after[i] - before[i]) / 100 ))"; i=$((i + 1)); done | awk '{s += $1; n++} END {printf "%.1f", s / n}'
}
metric_sum() { # METRIC PORTS...
  local m=$1; shift
  for port in "$@"; do curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$m" '$1 == m {print $2}'; done | awk '{s += $1} END {printf "%.0f", s}'
}
run_bench() { # LABEL PID ARGS...
  local label=$1 pid=$2; shift 2
  "$BENCH" append --addr 127.0.0.1:4000 --sessions 64 --session-prefix "$label" --server-pid "$pid" --json "$OUT/$label.json" "$@" >"$OUT/$label.txt"
  grep -E "ok/s|p50|p99|cpu" "$OUT/$label.txt" | tr -s ' ' | head -6 | sed "s/^/$label: /"
}

echo "== single node"
dir=$(mktemp -d "$PWD/target/bench-single.XXXXXX")
STARCITE_RAFT_DATA_DIR="$dir" PORT=4000 target/release/starcite 2>"$OUT/single.log" &
single=$!
until curl -sf -o /dev/null http://127.0.0.1:4000/health/ready; do sleep 0.2; done
echo "idle CPU (% of a core): $(idle_cpu $single)"
run_bench single-closed $single -c 64 --duration-secs "$SECS" --warmup-secs 2 --verify
run_bench single-open $single -c 64 --rate "$RATE" --duration-secs "$SECS" --warmup-secs 2
kill -TERM $single; wait $single || true
rm -rf "$dir"

echo "== 3-node cluster"
export CLUSTER_DIR=$PWD/target/bench-cluster/nodes
scripts/stop-cluster.sh --clean >/dev/null 2>&1 || true
NODES=3 scripts/start-cluster.sh >&2
pids=$(cat "$CLUSTER_DIR"/*.pid)
echo "idle CPU per node (% of a core): $(idle_cpu $pids)"
node1=$(cat "$CLUSTER_DIR/starcite-1.pid")
b0=$(metric_sum starcite_cluster_bytes_sent_total 4000 4001 4002)
e0=$(metric_sum starcite_events_append_total 4000 4001 4002)
run_bench cluster-closed "$node1" -c 64 --duration-secs "$SECS" --warmup-secs 2 --verify
b1=$(metric_sum starcite_cluster_bytes_sent_total 4000 4001 4002)
e1=$(metric_sum starcite_events_append_total 4000 4001 4002)
echo "cluster bytes sent per appended event (all nodes, closed-loop run incl. warmup and verify reads): $(( (b1 - b0) / (e1 - e0) ))"
run_bench cluster-open "$node1" -c 64 --rate "$RATE" --duration-secs "$SECS" --warmup-secs 2
echo "cluster node CPU seconds over the whole run: $(for p in $pids; do echo "$(cpu_ms "$p")"; done | tr '\n' ' ')ms"
scripts/stop-cluster.sh --clean >/dev/null
echo "results: $OUT/*.txt and *.json"
