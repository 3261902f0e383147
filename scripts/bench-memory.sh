#!/usr/bin/env bash
# Memory against history (issue #13 item 5, SPEC §5): one server per binary, archive off,
# filled in steps of STEP events over SESSIONS sessions; after each step the server's RSS
# (VmRSS), the size of its index scratch files (<data dir>/<core>/index.spill, page cache,
# not RSS) and of its log are recorded. With several binaries the runs go one after the
# other, same load, so their columns compare side by side.
#
#   bash scripts/bench-memory.sh BIN [BIN ...]
#
# Environment: STEPS (10), STEP (1000000 events), SESSIONS (1000), CORES (2), PAYLOAD (256),
# SHAPE ("-c 16 -d 32"), OUT (a new /tmp dir), BENCH_BIN (starcite-bench; default: next to the
# first BIN), DATA_ROOT (target/bench-data/memory: a real disk, O_DIRECT), SERVER_ENV (extra
# VAR=value words for the servers). Output: one line per step and $OUT/memory.tsv.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN ...]" >&2; exit 2; }
STEPS=${STEPS:-10}; STEP=${STEP:-1000000}; SESSIONS=${SESSIONS:-1000}; CORES=${CORES:-2}; PAYLOAD=${PAYLOAD:-256}
SHAPE=${SHAPE:-"-c 16 -d 32"}; OUT=${OUT:-$(mktemp -d /tmp/memory.XXXX)}; mkdir -p "$OUT"
BENCH=${BENCH_BIN:-$(dirname "$(realpath "$1")")/starcite-bench}
DATA_ROOT=${DATA_ROOT:-$(cd "$(dirname "$0")/.." && pwd)/target/bench-data/memory}
PORT=${PORT:-4670}
SP=""
cleanup() { [ -n "$SP" ] && kill -KILL "$SP" 2>/dev/null || true; rm -rf "$DATA_ROOT"; }
trap cleanup EXIT
printf 'bin\tevents\trss_mib\tspill_mib\tlog_mib\tsecs\n' >"$OUT/memory.tsv"
for bin in "$@"; do
    bin=$(realpath "$bin"); label=$bin
    rm -rf "$DATA_ROOT"; mkdir -p "$DATA_ROOT"
    env PORT=$PORT STARCITE_CLUSTER_PORT=$((PORT + 1)) STARCITE_RAFT_DATA_DIR="$DATA_ROOT" STARCITE_CORES="$CORES" \
        STARCITE_ARCHIVER_ENABLED=false ${SERVER_ENV:-} "$bin" >"$OUT/server.log" 2>&1 &
    SP=$!
    for _ in $(seq 300); do curl -sf --max-time 1 "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
    row() { # events secs
        local rss spill logb
        rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$SP/status")
        spill=$(find "$DATA_ROOT" -name index.spill -printf '%s\n' | awk '{ s += $1 } END { printf "%.1f", s / 1048576 }')
        logb=$(find "$DATA_ROOT" -name '*.seg' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / 1048576 }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$1" "$rss" "$spill" "$logb" "$2" | tee -a "$OUT/memory.tsv"
    }
    row 0 0
    for step in $(seq "$STEPS"); do
        t0=$(date +%s)
        # shellcheck disable=SC2086
        "$BENCH" append --addr 127.0.0.1:$PORT $SHAPE --sessions "$SESSIONS" --session-prefix mem --payload-bytes "$PAYLOAD" \
            --requests "$STEP" --no-progress --json "$OUT/step-$step.json" >"$OUT/step-$step.txt" 2>&1 \
            || { echo "step $step failed: $(tail -3 "$OUT/step-$step.txt")" >&2; exit 1; }
        row $((step * STEP)) $(($(date +%s) - t0))
    done
    kill -KILL "$SP"; wait "$SP" 2>/dev/null || true; SP=""
done
echo "results: $OUT/memory.tsv"
