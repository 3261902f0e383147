#!/usr/bin/env bash
# A/B of the append hot path (issue #13): two server binaries, measured alternately in one
# session on fresh data dirs, same load. Per run: appends/s, server CPU µs per append, machine-wide CPU µs per append (every process and kernel thread, the bench included),
# events per fdatasync, heap allocations per append, p50/p99, RSS. Results: one line per run on stdout and a TSV.
#
#   bash scripts/bench-hotpath.sh A_BIN B_BIN [OUT_DIR]
#
# Environment: ROUNDS (2), SECS (8), CORES_LIST ("1 2"), SHAPE ("-c 8 -d 16"), SESSIONS (64),
# PAYLOAD (256), RATES (open-loop rates to add after each closed-loop run, e.g. "5000 20000"),
# PEAK_PERCENTS (open-loop runs at these percentages of the closed-loop rate the same server
# just reached, e.g. "10 50"; latency counts from each request's scheduled send time),
# BENCH_BIN (starcite-bench; default: next to A_BIN), SERVER_ENV (extra VAR=value words for
# both servers). The label column says which binary (A or B); the rate column "closed", a
# fixed rate, or "N%" of the peak.
set -euo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); OUT=${3:-$(mktemp -d /tmp/hotpath.XXXX)}
mkdir -p "$OUT"
ROUNDS=${ROUNDS:-2}; SECS=${SECS:-8}; CORES_LIST=${CORES_LIST:-"1 2"}; SHAPE=${SHAPE:-"-c 8 -d 16"}
SESSIONS=${SESSIONS:-64}; PAYLOAD=${PAYLOAD:-256}; RATES=${RATES:-}
BENCH=${BENCH_BIN:-$(dirname "$A")/starcite-bench}
DATA_ROOT=${DATA_ROOT:-$(cd "$(dirname "$0")/.." && pwd)/target/bench-data/hotpath}
PORT=${PORT:-4650}
metric() { { curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" || true; } | awk -v n="$1" '$1 == n { s += $2; f = 1 } END { printf "%.0f", f ? s : 0 }'; }
SP=""
cleanup() { [ -n "$SP" ] && kill -KILL "$SP" 2>/dev/null || true; rm -rf "$DATA_ROOT"; }
trap cleanup EXIT
printf 'label\tcores\trate\tops_per_sec\tcpu_us_per_op\tmachine_us_per_op\tevents_per_fsync\tallocs_per_op\tp50_us\tp99_us\trss_mib\n' >"$OUT/results.tsv"
run_one() { # label bin cores
    local label=$1 bin=$2 cores=$3 dir="$DATA_ROOT/$1-$3-$RANDOM"
    rm -rf "$DATA_ROOT"; mkdir -p "$dir"
    env PORT=$PORT STARCITE_CLUSTER_PORT=$((PORT + 1)) STARCITE_RAFT_DATA_DIR="$dir" STARCITE_CORES="$cores" ${SERVER_ENV:-} \
        "$bin" >"$OUT/$label-$cores.server.log" 2>&1 &
    SP=$!
    for _ in $(seq 300); do curl -sf --max-time 1 "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
    local rate peak=0 pct list
    list="closed $RATES"
    for pct in ${PEAK_PERCENTS:-}; do list="$list $pct%"; done
    for rate in $list; do
        local ev0 fs0 al0 ev1 fs1 al1 json="$OUT/$label-$cores-${rate%\%}.json" extra=()
        case "$rate" in
        closed) ;;
        *%) json="$OUT/$label-$cores-pct${rate%\%}.json"; extra=(--rate "$(( peak * ${rate%\%} / 100 > 100 ? peak * ${rate%\%} / 100 : 100 ))") ;;
        *) extra=(--rate "$rate") ;;
        esac
        ev0=$(metric starcite_events_append_total); fs0=$(metric starcite_log_fsyncs_total); al0=$(metric starcite_allocations_total)
        # shellcheck disable=SC2086
        "$BENCH" append --addr 127.0.0.1:$PORT $SHAPE --sessions "$SESSIONS" --payload-bytes "$PAYLOAD" --warmup-secs 1 \
            --duration-secs "$SECS" --server-pid "$SP" --no-progress --allow-errors "${extra[@]}" --json "$json" >"${json%.json}.txt" 2>&1 || true
        ev1=$(metric starcite_events_append_total); fs1=$(metric starcite_log_fsyncs_total); al1=$(metric starcite_allocations_total)
        local rss; rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SP/status")
        python3 - "$json" "$label" "$cores" "$rate" "$((ev1 - ev0))" "$((fs1 - fs0))" "$((al1 - al0))" "$rss" >>"$OUT/results.tsv" <<'PY'
import json, sys
path, label, cores, rate, ev, fs, al, rss = sys.argv[1:]
d = json.load(open(path))
def find(o, key):
    if isinstance(o, dict):
        if key in o: return o[key]
        for v in o.values():
            r = find(v, key)
            if r is not None: return r
    return None
ops = d.get("throughput_ops_per_sec") or 0
ok = d.get("ok") or 0
cpu = d["cpu"]["server_cpu_secs"] * 1e6 / ok if ok else 0
machine = (d["cpu"].get("machine_cpu_secs") or 0) * 1e6 / ok if ok else 0
lat = d["latency_us"]["append"]
p50, p99 = lat["p50"], lat["p99"]
epf = int(ev) / int(fs) if int(fs) else 0
apo = int(al) / int(ev) if int(ev) else 0
print(f"{label}\t{cores}\t{rate}\t{ops:.0f}\t{cpu:.1f}\t{machine:.1f}\t{epf:.1f}\t{apo:.0f}\t{p50}\t{p99}\t{rss}")
PY
        tail -1 "$OUT/results.tsv" >&2
        [ "$rate" = closed ] && peak=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1])).get("throughput_ops_per_sec") or 0))' "$json" 2>/dev/null || echo 0)
    done
    kill -TERM "$SP"; wait "$SP" 2>/dev/null || true; SP=""
}
for round in $(seq "$ROUNDS"); do
    for cores in $CORES_LIST; do
        if [ $((round % 2)) = 1 ]; then run_one A "$A" "$cores"; run_one B "$B" "$cores"; else run_one B "$B" "$cores"; run_one A "$A" "$cores"; fi
    done
done
echo "results: $OUT/results.tsv" >&2
column -t "$OUT/results.tsv"
