#!/usr/bin/env bash
# Starcite benchmark suite: the whole comparison in one session, side by side.
#
#   bash scripts/bench.sh            # the suite (aims to finish in < 10 min, see BENCH_BUDGET_SECS)
#   bash scripts/bench.sh profile    # callgrind (+ perf cpu-clock when it works) of the append hot path
#   bash scripts/bench.sh micro      # cargo bench --bench log_append / --bench record_codec
#   bash scripts/bench.sh SCENARIO   # one Starcite scenario (all cores) with the suite's settings:
#                                    # append, append-1session, append-openloop, mix, retry-storm,
#                                    # tail, replay
#
# What the suite runs (each run's `starcite-bench --json` file, its raw output and a
# summary.md land in the results folder):
#   1. machine facts: nproc, CPU, kernel, fdatasync latency (pg_test_fsync from postgresql-15);
#   2. loopback HTTP ceiling: nginx `return 200` driven by `starcite-bench http-get`;
#   3. Redis Streams XADD with appendonly yes + appendfsync always (`starcite-bench redis-xadd`);
#   4. Starcite with all cores and with STARCITE_CORES=1 (fresh data dir each): peak append
#      (64 sessions and 1 session), open loop at half the peak, mix, retry-storm, tail fan-out,
#      replay of 1,000,000 events, recovery of the data dir the scenarios filled; then a
#      recovery run with as many events as fit the time budget (target 10,000,000);
#   5. ratios: Starcite / nginx, Starcite / Redis, STARCITE_CORES=1 / all cores.
# For every Starcite run the server's CPU (--server-pid and /proc/<pid>/stat), write_bytes
# (/proc/<pid>/io) and a few /metrics counters are read before and after the run.
#
# Environment (all optional):
#   STARCITE_REPO       repo root (default: the parent of this script's directory)
#   CARGO_TARGET_DIR    cargo target dir (default: <repo>/target)
#   BENCH_OUT           results folder (default: <repo>/target/bench-results/<UTC timestamp>)
#   BENCH_DATA          data dirs go in BENCH_DATA/<UTC timestamp>/, on a real disk, not tmpfs
#                       (default: <repo>/target/bench-data)
#   BENCH_BUDGET_SECS   wall-time budget of the suite, build included (default 570)
#   RECOVERY_EVENTS     events for the large recovery run (default 10000000, the target;
#                       fewer when they do not fit the budget: the summary says so)
#   BENCH_QUIET_WAIT_SECS  before each phase, wait at most this long for an idle machine (default 20)
#   BENCH_TAILERS       tailers for the tail run (default: min(10000, what `ulimit -n` allows))
#   BENCH_KEEP_DATA=1   keep the data dirs (default: removed at the end; they hold GBs)
#   BENCH_SKIP_BUILD=1  do not run cargo build (use the binaries already in the target dir;
#                       without it, cargo builds exactly what README's commands build, so
#                       nothing is rebuilt when they already ran)
#   BENCH_PEAK_SECS, BENCH_SHORT_SECS, BENCH_REPLAY_EVENTS  run lengths (10, 5, 1000000); for smoke tests
#
# Needs: Linux with io_uring, the Rust toolchain, root (apt-get installs what is missing:
# nginx-light, redis-server, postgresql-15, curl, python3; glommio locks memory). Only
# loopback addresses are used. Everything this script starts is stopped by it (trap).
set -euo pipefail

SCENARIOS="append append-1session append-openloop mix retry-storm tail replay"
MODE=${1:-all}
case " all profile micro $SCENARIOS " in *" $MODE "*) ;; *)
    echo "usage: bash scripts/bench.sh [all|profile|micro|<scenario>]; scenarios: $SCENARIOS" >&2
    exit 2
    ;;
esac

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "${STARCITE_REPO:-$SCRIPT_DIR/..}" && pwd)
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac }
TARGET=$(abs "${CARGO_TARGET_DIR:-$REPO/target}")
export CARGO_TARGET_DIR=$TARGET
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$(abs "${BENCH_OUT:-$REPO/target/bench-results/$STAMP}")
DATA=$(abs "${BENCH_DATA:-$REPO/target/bench-data}")/$STAMP
BUDGET=${BENCH_BUDGET_SECS:-570}
RECOVERY_TARGET=${RECOVERY_EVENTS:-10000000}
SERVER_BIN=$TARGET/release/starcite
BENCH_BIN=$TARGET/release/starcite-bench
LOOP=127.0.0.1
PEAK_SECS=${BENCH_PEAK_SECS:-10}   # the three peak-throughput runs (nginx, Redis, Starcite append): same length
SHORT_SECS=${BENCH_SHORT_SECS:-5}  # every other load run
REPLAY_EVENTS=${BENCH_REPLAY_EVENTS:-1000000}
LOAD=(-c 8 -d 16) # connections x pipeline of every peak run (nginx, Redis, Starcite)
PAYLOAD=256
SECONDS=0

# The log engine writes with O_DIRECT: test the filesystem under the data dir (not its
# path: /tmp may well be ext4), before any result folder is made.
data_parent=$(dirname "$DATA")
made_parent=0
[ -d "$data_parent" ] || made_parent=1
mkdir -p "$DATA"
if ! dd if=/dev/zero of="$DATA/.odirect-probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
    fstype=$(stat -f -c %T "$DATA" 2>/dev/null || echo unknown)
    rm -f "$DATA/.odirect-probe"
    rmdir "$DATA" 2>/dev/null || true
    [ "$made_parent" = 1 ] && rmdir "$data_parent" 2>/dev/null || true
    echo "BENCH_DATA=$data_parent: the filesystem there ($fstype) refuses O_DIRECT writes, which the log engine needs; set BENCH_DATA to a directory on a real disk (ext4, xfs)" >&2
    exit 2
fi
rm -f "$DATA/.odirect-probe"
mkdir -p "$OUT"

log() { printf '[%4ds] %s\n' "$SECONDS" "$*" | tee -a "$OUT/suite.log" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup -----------
STARTED_PIDS=()
POLICY_CREATED=0
kill_tree() { # pid: TERM the process and its descendants (by pid), KILL what is left
    local pid=$1 kids k
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    for k in $kids; do kill_tree "$k"; done
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
stop_pid() { # pid: stop a process this script started, and forget it
    local pid=$1 p keep=()
    kill_tree "$pid"
    wait "$pid" 2>/dev/null || true
    for p in "${STARTED_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p k
    for p in "${STARTED_PIDS[@]+"${STARTED_PIDS[@]}"}"; do kill_tree "$p"; done
    # anything else still running under this shell (e.g. the server a recovery run started)
    for k in $(ps -o pid= --ppid $$ 2>/dev/null || true); do
        [ "$k" = "$BASHPID" ] || kill_tree "$k"
    done
    [ "$POLICY_CREATED" = 1 ] && rm -f /usr/sbin/policy-rc.d
    if [ "${BENCH_KEEP_DATA:-0}" != 1 ] && [ -d "$DATA" ]; then rm -rf "$DATA"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- packages ----------
apt_install() {
    [ "$(id -u)" = 0 ] || die "missing $*; run as root so apt-get can install it"
    # Debian starts a package's daemon on install (nginx on :80, redis on :6379, a
    # PostgreSQL cluster on :5432); keep them from starting while we install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && POLICY_CREATED=1
    fi
    log "apt-get install -y $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$OUT/apt.log" 2>&1; then
        apt-get update >>"$OUT/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$OUT/apt.log" 2>&1 || return 1
    fi
    if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=0; fi
}
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
need() { # command package...
    local c=$1; shift
    have "$c" && return 0
    local p
    for p in "$@"; do apt_install "$p" && have "$c" && return 0; done
    die "cannot install $c (tried: $*)"
}
pg_test_fsync_bin() { { ls /usr/lib/postgresql/*/bin/pg_test_fsync 2>/dev/null || true; } | sort -V | tail -1; }
NGINX=/usr/sbin/nginx
REDIS=/usr/bin/redis-server

# ---------------------------------------------------------------- helpers -----------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port timeout_secs
    local i
    for i in $(seq $(($2 * 20))); do
        (exec 3<>"/dev/tcp/$LOOP/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
CLK_TCK=$(getconf CLK_TCK)
cpu_secs() { # pids...: user+sys CPU seconds of the processes (all threads)
    local total=0 p t
    for p in "$@"; do
        t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    awk -v t="$total" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}
write_bytes() { # pids...
    local total=0 p w
    for p in "$@"; do
        w=$(awk '/^write_bytes/ {print $2}' "/proc/$p/io" 2>/dev/null) || w=0
        total=$((total + ${w:-0}))
    done
    echo "$total"
}
metric() { # port name: one Starcite counter (0 when absent)
    { curl -s --max-time 5 "http://$LOOP:$1/metrics" || true; } | awk -v n="$2" '$1 == n { printf "%.0f", $2; f = 1 } END { if (!f) print 0 }'
}
json_get() { # file python-expression-on-d
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null || echo ""
}
record() { echo -e "$1\t$2\t$3\t$4" >>"$OUT/runs.tsv"; } # name rc wall_secs note

# Noise accounting for one run: machine-wide busy CPU (/proc/stat), steal, and the CPU of
# this script's reaped children (the bench, and servers the bench started and reaped).
# CPU used by the machine outside the server and the bench = other tenants + kernel threads.
# Machine busy CPU = cores x wall - (idle + iowait) from /proc/stat (idle time is accounted
# precisely on tickless kernels, the busy fields are tick-sampled and miss short bursts).
WIN=""
NCPU=$(nproc)
stat_idle_steal() { awk '/^cpu / {print $5 + $6, $9; exit}' /proc/stat; }
# `times` must run in this shell (not in a $(...) subshell) to see this shell's children.
children_secs() { awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$OUT/.times"; }
win_start() {
    local kids
    times >"$OUT/.times"
    kids=$(children_secs)
    WIN="$(date +%s.%N) $(stat_idle_steal) $kids"
}
win_end() { # name [server_cpu_secs]
    local now idle steal kids
    times >"$OUT/.times"
    kids=$(children_secs)
    now=$(date +%s.%N)
    read -r idle steal < <(stat_idle_steal)
    # shellcheck disable=SC2086
    set -- "$1" "${2:-0}" $WIN
    awk -v srv="$2" -v t0="$3" -v i0="$4" -v st0="$5" -v k0="$6" -v t1="$now" -v i1="$idle" -v st1="$steal" -v k1="$kids" -v hz="$CLK_TCK" -v n="$NCPU" \
        'BEGIN { w = t1 - t0; b = n * w - (i1 - i0) / hz; st = (st1 - st0) / hz; k = k1 - k0;
                 printf "{\"wall_secs\": %.3f, \"machine_busy_cpu_secs\": %.2f, \"steal_secs\": %.2f, \"children_cpu_secs\": %.2f, \"server_cpu_secs\": %.2f, \"other_cpu_secs\": %.2f}\n",
                        w, b, st, k, srv, b - k - srv }' >"$OUT/$1.env.json"
}

build() {
    if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
        log "build skipped (BENCH_SKIP_BUILD=1)"
    else
        command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain first"
        # The README's builds, package by package: `cargo build --release` (the server, as
        # `cargo run --release` builds it) and the bench (bench/README.md). A --workspace
        # build unifies features across both and rebuilds dependencies they already built.
        log "cargo build --release --locked; cargo build --release --locked -p starcite-bench (CARGO_TARGET_DIR=$TARGET)"
        local t0=$SECONDS
        (cd "$REPO" && cargo build --release --locked && cargo build --release --locked -p starcite-bench) >"$OUT/build.txt" 2>&1 ||
            { tail -30 "$OUT/build.txt" >&2; die "build failed (see $OUT/build.txt)"; }
        echo "build_secs $((SECONDS - t0))" >>"$OUT/build.txt"
    fi
    [ -x "$SERVER_BIN" ] && [ -x "$BENCH_BIN" ] || die "binaries not found in $TARGET/release"
}

# Raise the open-file limit: the tail run needs one fd per tailer in the bench and in the
# server (both inherit this shell's limit).
raise_nofile() {
    ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# The machine may be shared: before each phase wait (at most BENCH_QUIET_WAIT_SECS, default
# 20) for the machine-wide busy CPU over 1 s to drop below 0.3 cores; record what was seen.
wait_quiet() { # phase
    local limit=${BENCH_QUIET_WAIT_SECS:-20} t0=$SECONDS b0 b1 busy
    while :; do
        b0=$(awk '/^cpu / {print $5 + $6; exit}' /proc/stat); sleep 1
        b1=$(awk '/^cpu / {print $5 + $6; exit}' /proc/stat)
        busy=$(awk -v a="$b0" -v b="$b1" -v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN { x = n - (b - a) / hz; printf "%.2f", (x < 0 ? 0 : x) }')
        awk -v b="$busy" 'BEGIN { exit !(b < 0.3) }' && break
        [ $((SECONDS - t0)) -ge "$limit" ] && break
    done
    echo -e "$1\t$((SECONDS - t0))\t$busy" >>"$OUT/quiet.tsv"
    [ "$((SECONDS - t0))" -le 1 ] || log "waited $((SECONDS - t0))s for a quiet machine before $1 (busy $busy cores)"
}

# ---------------------------------------------------------------- Starcite server ---
SC_PID=""
SC_PORT=""
start_starcite() { # label data_dir cores(""=all)
    local label=$1 dir=$2 cores=$3
    SC_PORT=$(free_port)
    mkdir -p "$dir"
    if [ -n "$cores" ]; then
        PORT=$SC_PORT STARCITE_RAFT_DATA_DIR=$dir STARCITE_CORES=$cores "$SERVER_BIN" >>"$OUT/$label.server.log" 2>&1 &
    else
        PORT=$SC_PORT STARCITE_RAFT_DATA_DIR=$dir "$SERVER_BIN" >>"$OUT/$label.server.log" 2>&1 &
    fi
    SC_PID=$!
    STARTED_PIDS+=("$SC_PID")
    local i
    for i in $(seq 1200); do
        curl -sf --max-time 1 "http://$LOOP:$SC_PORT/health/ready" >/dev/null 2>&1 && { log "starcite ($label) pid $SC_PID ready on :$SC_PORT"; return 0; }
        kill -0 "$SC_PID" 2>/dev/null || die "starcite ($label) exited; see $OUT/$label.server.log"
        sleep 0.05
    done
    die "starcite ($label) not ready after 60 s"
}

# sc_run NAME SUBCOMMAND ARGS...: one starcite-bench run against the running server, with
# the server's CPU, write_bytes and log counters read before and after.
sc_run() {
    local name=$1 sub=$2
    shift 2
    local t0=$SECONDS cpu0 wb0 ev0 lb0 fs0 lr0 cpu1 wb1 ev1 lb1 fs1 lr1 rc=0
    cpu0=$(cpu_secs "$SC_PID"); wb0=$(write_bytes "$SC_PID")
    ev0=$(metric "$SC_PORT" starcite_events_append_total); lb0=$(metric "$SC_PORT" starcite_log_bytes_written_total)
    fs0=$(metric "$SC_PORT" starcite_log_fsyncs_total); lr0=$(metric "$SC_PORT" starcite_log_records_total)
    log "run $name: starcite-bench $sub $*"
    echo "starcite-bench $sub --addr $LOOP:$SC_PORT $* --server-pid $SC_PID --json $name.json" >"$OUT/$name.cmd"
    win_start
    "$BENCH_BIN" "$sub" --addr "$LOOP:$SC_PORT" "$@" --server-pid "$SC_PID" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 || rc=$?
    cpu1=$(cpu_secs "$SC_PID"); wb1=$(write_bytes "$SC_PID")
    win_end "$name" "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}')"
    ev1=$(metric "$SC_PORT" starcite_events_append_total); lb1=$(metric "$SC_PORT" starcite_log_bytes_written_total)
    fs1=$(metric "$SC_PORT" starcite_log_fsyncs_total); lr1=$(metric "$SC_PORT" starcite_log_records_total)
    cat >"$OUT/$name.io.json" <<EOF
{"server_pid": $SC_PID, "server_cpu_secs_whole_run": $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}'),
 "write_bytes": $((wb1 - wb0)), "events_appended": $((ev1 - ev0)), "log_bytes_written": $((lb1 - lb0)),
 "log_fsyncs": $((fs1 - fs0)), "log_records": $((lr1 - lr0)), "rc": $rc, "wall_secs": $((SECONDS - t0))}
EOF
    record "$name" "$rc" "$((SECONDS - t0))" "$sub"
    [ "$rc" = 0 ] || log "  $name exited $rc (see $OUT/$name.txt)"
    grep -E '^(throughput|verified|server cpu|bench cpu)' "$OUT/$name.txt" | sed 's/^/    /' >&2 || true
}

# sc_scenario LABEL NAME: one scenario of the suite against the running server. The open
# loop runs at half the peak that `append` measured in this session (or at
# BENCH_OPENLOOP_RATE when `append` did not run).
sc_scenario() {
    local L=$1 name=$2 peak rate
    case "$name" in
    append) sc_run "$L-append" append "${LOAD[@]}" --sessions 64 --payload-bytes $PAYLOAD --warmup-secs 1 --duration-secs $PEAK_SECS --verify ;;
    append-1session) sc_run "$L-append-1session" append "${LOAD[@]}" --sessions 1 --session-prefix bench-single --payload-bytes $PAYLOAD --duration-secs $SHORT_SECS --verify ;;
    append-openloop)
        peak=$(json_get "$OUT/$L-append.json" 'd["throughput_ops_per_sec"]' 2>/dev/null || true)
        rate=$(awk -v p="${peak:-0}" -v r="${BENCH_OPENLOOP_RATE:-0}" 'BEGIN { if (r == 0) r = int(p / 2); if (r < 100) r = 100; print r }')
        sc_run "$L-append-openloop" append "${LOAD[@]}" --sessions 64 --session-prefix bench-open --payload-bytes $PAYLOAD --rate "$rate" --duration-secs $PEAK_SECS --verify ;;
    mix) sc_run "$L-mix" mix "${LOAD[@]}" --sessions 64 --read-ratio 0.5 --read-limit 100 --payload-bytes $PAYLOAD --duration-secs $SHORT_SECS --verify ;;
    retry-storm) sc_run "$L-retry-storm" retry-storm "${LOAD[@]}" --sessions 64 --payload-bytes $PAYLOAD --duration-secs $SHORT_SECS --verify ;;
    tail) sc_run "$L-tail" tail --tailers "$TAILERS" --sessions $((TAILERS / 10 > 0 ? TAILERS / 10 : 1)) --append-rate 1000 --batch-size 1 \
        --payload-bytes $PAYLOAD --duration-secs $SHORT_SECS --open-timeout-secs 60 ;;
    replay) sc_run "$L-replay" replay --events "$REPLAY_EVENTS" --connections 8 --pipeline 32 --payload-bytes $PAYLOAD --modes ws1000,page1000 --timeout-secs 60 ;;
    *) die "unknown scenario $name" ;;
    esac
}

# One Starcite configuration: every scenario on a fresh data dir, then recovery of that dir.
starcite_suite() { # label cores(""=all)
    local L=$1 cores=$2 dir=$DATA/starcite-$1
    rm -rf "$dir"
    start_starcite "$L" "$dir" "$cores"
    local scenario
    for scenario in $SCENARIOS; do
        sc_scenario "$L" "$scenario"
    done
    # events in the log of this data dir (the process lifetime is the dir's lifetime)
    metric "$SC_PORT" starcite_events_append_total >"$OUT/$L-events-in-log.txt"
    curl -s --max-time 5 "http://$LOOP:$SC_PORT/metrics" >"$OUT/$L-metrics-final.txt" || true
    stop_pid "$SC_PID"
    # recovery of what the scenarios wrote (kill -9, restart, time to /health/ready)
    local t0=$SECONDS rc=0 cargs=()
    [ -n "$cores" ] && cargs=(--cores "$cores")
    log "run $L-recovery: recovery of this config's data dir ($(cat "$OUT/$L-events-in-log.txt") events)"
    echo "starcite-bench recovery --server-bin $SERVER_BIN --data-dir $dir ${cargs[*]} --session-prefix bench-append --sessions 64 --sample 4 --restarts 1 --json $L-recovery.json" >"$OUT/$L-recovery.cmd"
    win_start
    "$BENCH_BIN" recovery --server-bin "$SERVER_BIN" --data-dir "$dir" "${cargs[@]+"${cargs[@]}"}" --session-prefix bench-append --sessions 64 \
        --sample 4 --restarts 1 --server-log "$OUT/$L-recovery.server.log" --json "$OUT/$L-recovery.json" >"$OUT/$L-recovery.txt" 2>&1 || rc=$?
    win_end "$L-recovery"
    record "$L-recovery" "$rc" "$((SECONDS - t0))" recovery
    grep -E '^(throughput|verified)' "$OUT/$L-recovery.txt" | sed 's/^/    /' >&2 || true
    [ "${BENCH_KEEP_DATA:-0}" = 1 ] || rm -rf "$dir"
}

# Large recovery: fill a fresh data dir in chunks while the budget allows (up to
# RECOVERY_TARGET events), kill -9 the server, then `starcite-bench recovery` on that dir
# (its first start and its restart are both timed process start -> /health/ready).
recovery_large() {
    local dir=$DATA/starcite-recovery L=recovery-large
    rm -rf "$dir"
    # recovery cost per event measured earlier in this session (all cores), with margin
    local us_per_event
    us_per_event=$(python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
try:
    r = json.load(open(os.path.join(out, "all-recovery.json")))
    n = float(open(os.path.join(out, "all-events-in-log.txt")).read().strip() or 0)
    t = r["extra"]["restarts"][0]["ready_secs"]
    print(max(1.0, t / n * 1e6) if n > 0 else 3.0)
except Exception:
    print(3.0)
PY
)
    start_starcite "$L" "$dir" ""
    local filled=0 i=0 chunk rate=50000 remaining need fill_t0=$SECONDS note=""
    local wb0 cpu0
    wb0=$(write_bytes "$SC_PID"); cpu0=$(cpu_secs "$SC_PID")
    while [ "$filled" -lt "$RECOVERY_TARGET" ]; do
        chunk=$((RECOVERY_TARGET - filled))
        [ "$chunk" -gt 1000000 ] && chunk=1000000
        remaining=$((BUDGET - SECONDS - 25))
        # time to append this chunk + 2 full recoveries (first start and restart) of the
        # whole log + read-back of 1/8 of it, with a 1.5x margin
        need=$(awk -v c="$chunk" -v r="$rate" -v n="$((filled + chunk))" -v u="$us_per_event" \
            'BEGIN { printf "%d", c / r + 1.5 * (2 * n * u / 1e6 + n / 8 / 400000 + 4) }')
        if [ "$need" -gt "$remaining" ]; then
            note="stopped at $filled events: the next $chunk (est. ${need}s with recovery) did not fit the ${remaining}s left of the ${BUDGET}s budget"
            break
        fi
        i=$((i + 1))
        local rc=0
        log "fill $L chunk $i: $chunk events (have $filled)"
        "$BENCH_BIN" append --addr "$LOOP:$SC_PORT" -c 16 -d 32 --sessions 16 --session-prefix bench-recovery \
            --payload-bytes $PAYLOAD --requests "$chunk" --server-pid "$SC_PID" --json "$OUT/$L-fill-$i.json" >"$OUT/$L-fill-$i.txt" 2>&1 || rc=$?
        [ "$rc" = 0 ] || { note="fill chunk $i exited $rc"; log "  $note"; break; }
        local ok el
        ok=$(json_get "$OUT/$L-fill-$i.json" 'd["ok"]'); el=$(json_get "$OUT/$L-fill-$i.json" 'd["elapsed_secs"]')
        filled=$((filled + ${ok:-0}))
        rate=$(awk -v o="${ok:-0}" -v e="${el:-1}" 'BEGIN { r = o / (e > 0 ? e : 1); print (r > 1000 ? r : 1000) }')
    done
    local total wb1 cpu1
    total=$(metric "$SC_PORT" starcite_events_append_total)
    wb1=$(write_bytes "$SC_PID"); cpu1=$(cpu_secs "$SC_PID")
    cat >"$OUT/$L-fill.json" <<EOF
{"target_events": $RECOVERY_TARGET, "events_in_log": $total, "chunks": $i, "fill_secs": $((SECONDS - fill_t0)),
 "write_bytes": $((wb1 - wb0)), "server_cpu_secs": $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}'),
 "us_per_event_estimate": $us_per_event, "note": "$note"}
EOF
    log "large recovery: $total events in the log${note:+ ($note)}"
    kill -KILL "$SC_PID" 2>/dev/null || true # a crash, as in the recovery scenario
    stop_pid "$SC_PID"
    local t0=$SECONDS rc=0
    echo "starcite-bench recovery --server-bin $SERVER_BIN --data-dir $dir --session-prefix bench-recovery --sessions 16 --sample 2 --restarts 1 --json $L.json" >"$OUT/$L.cmd"
    win_start
    "$BENCH_BIN" recovery --server-bin "$SERVER_BIN" --data-dir "$dir" --session-prefix bench-recovery --sessions 16 --sample 2 \
        --restarts 1 --ready-timeout-secs 300 --server-log "$OUT/$L.server.log" --json "$OUT/$L.json" >"$OUT/$L.txt" 2>&1 || rc=$?
    win_end "$L"
    record "$L" "$rc" "$((SECONDS - t0))" recovery
    grep -E '^(throughput|verified|first_start)' "$OUT/$L.txt" | sed 's/^/    /' >&2 || true
    [ "${BENCH_KEEP_DATA:-0}" = 1 ] || rm -rf "$dir"
}

# ---------------------------------------------------------------- suite steps -------
machine_facts() {
    local f=$OUT/machine.txt pg
    {
        echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "nproc: $(nproc)"
        echo "cpu_model: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "kernel: $(uname -r)"
        echo "memory_mib: $(awk '/^MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)"
        echo "data_fs: $(df -PT "$DATA" | awk 'NR == 2 {print $1, $2}')"
        echo "ulimit_nofile: $(ulimit -n)"
        echo "tailers: $TAILERS"
        echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
        echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //')"
        echo "redis: $("$REDIS" --version | awk '{print $3}')"
        echo "git_commit: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "source_sha256: $(cd "$REPO" && find Cargo.toml Cargo.lock src bench/src bench/Cargo.toml -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
        echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
        # machine-wide busy CPU over 2 s before anything starts (other tenants of a shared machine)
        local b0 b1
        b0=$(awk '/^cpu / {print $5 + $6; exit}' /proc/stat); sleep 2
        b1=$(awk '/^cpu / {print $5 + $6; exit}' /proc/stat)
        echo "busy_cores_before: $(awk -v a="$b0" -v b="$b1" -v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN { x = n - (b - a) / hz / 2; printf "%.2f", (x < 0 ? 0 : x) }')"
    } >"$f"
    top -b -n 1 -w 200 2>/dev/null | head -20 >"$OUT/top-before.txt" || true
    # fdatasync latency: pg_test_fsync -s 2 on the data disk. Its fdatasync lines come in
    # the first two sections; the run is stopped once both are printed (~12 s instead of ~32 s).
    pg=$(pg_test_fsync_bin)
    log "pg_test_fsync -f $DATA/pg_test_fsync.tmp -s 2"
    "$pg" -f "$DATA/pg_test_fsync.tmp" -s 2 >"$OUT/pg_test_fsync.txt" 2>&1 &
    local pgp=$! i
    STARTED_PIDS+=("$pgp")
    for i in $(seq 600); do
        kill -0 "$pgp" 2>/dev/null || break
        [ "$(grep -c 'fdatasync.*usecs/op' "$OUT/pg_test_fsync.txt")" -ge 2 ] && break
        sleep 0.1
    done
    stop_pid "$pgp"
    rm -f "$DATA/pg_test_fsync.tmp"
    { grep -E '^[[:space:]]+fdatasync[[:space:]].*usecs/op' "$OUT/pg_test_fsync.txt" || true; } |
        sed -E 's/^ +/fdatasync_line: /; s/ +/ /g' >>"$f"
    echo "(stopped after the fdatasync lines of the first two sections)" >>"$OUT/pg_test_fsync.txt"
    cat "$f" >&2
}

run_nginx() {
    local dir=$OUT/nginx port t0=$SECONDS rc=0 np pids cpu0 cpu1
    mkdir -p "$dir/logs"
    port=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    default_type application/json;
    client_body_temp_path $dir/tmp;
    server {
        listen $LOOP:$port;
        location / { return 200 '{"ok":true}'; }
    }
}
EOF
    "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" &
    np=$!
    STARTED_PIDS+=("$np")
    wait_port "$port" 10 || die "nginx did not listen on :$port (see $dir/logs/error.log)"
    sleep 0.2
    pids="$np $(ps -o pid= --ppid "$np" | tr '\n' ' ')"
    cpu0=$(cpu_secs $pids)
    log "run nginx-get: starcite-bench http-get ${LOAD[*]} (nginx pids $pids)"
    echo "starcite-bench http-get --addr $LOOP:$port --path / ${LOAD[*]} --warmup-secs 1 --duration-secs $PEAK_SECS --json nginx-get.json" >"$OUT/nginx-get.cmd"
    win_start
    "$BENCH_BIN" http-get --addr "$LOOP:$port" --path / "${LOAD[@]}" --warmup-secs 1 --duration-secs $PEAK_SECS \
        --json "$OUT/nginx-get.json" >"$OUT/nginx-get.txt" 2>&1 || rc=$?
    cpu1=$(cpu_secs $pids)
    win_end nginx-get "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}')"
    echo "{\"server_cpu_secs_whole_run\": $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}'), \"pids\": \"$pids\", \"rc\": $rc}" >"$OUT/nginx-get.io.json"
    record nginx-get "$rc" "$((SECONDS - t0))" http-get
    grep -E '^(throughput|bench cpu)' "$OUT/nginx-get.txt" | sed 's/^/    /' >&2 || true
    stop_pid "$np"
}

run_redis() {
    local dir=$DATA/redis port t0=$SECONDS rc=0 rp cpu0 cpu1 wb0 wb1
    mkdir -p "$dir" "$OUT/redis"
    port=$(free_port)
    cat >"$OUT/redis/redis.conf" <<EOF
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
dir $dir
logfile $OUT/redis/redis.log
appendonly yes
appendfsync always
save ""
EOF
    "$REDIS" "$OUT/redis/redis.conf" &
    rp=$!
    STARTED_PIDS+=("$rp")
    wait_port "$port" 10 || die "redis did not listen on :$port (see $OUT/redis/redis.log)"
    sleep 0.2
    cpu0=$(cpu_secs "$rp"); wb0=$(write_bytes "$rp")
    log "run redis-xadd: starcite-bench redis-xadd ${LOAD[*]}"
    echo "starcite-bench redis-xadd --addr $LOOP:$port ${LOAD[*]} --streams 64 --payload-bytes $PAYLOAD --warmup-secs 1 --duration-secs $PEAK_SECS --verify --server-pid <redis pid> --json redis-xadd.json" >"$OUT/redis-xadd.cmd"
    win_start
    "$BENCH_BIN" redis-xadd --addr "$LOOP:$port" "${LOAD[@]}" --streams 64 --payload-bytes $PAYLOAD --warmup-secs 1 \
        --duration-secs $PEAK_SECS --verify --server-pid "$rp" --json "$OUT/redis-xadd.json" >"$OUT/redis-xadd.txt" 2>&1 || rc=$?
    cpu1=$(cpu_secs "$rp"); wb1=$(write_bytes "$rp")
    win_end redis-xadd "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}')"
    echo "{\"server_cpu_secs_whole_run\": $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}'), \"write_bytes\": $((wb1 - wb0)), \"rc\": $rc}" >"$OUT/redis-xadd.io.json"
    record redis-xadd "$rc" "$((SECONDS - t0))" redis-xadd
    grep -E '^(throughput|server cpu|bench cpu|verified)' "$OUT/redis-xadd.txt" | sed 's/^/    /' >&2 || true
    stop_pid "$rp"
}

write_summary() {
    echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
    echo "total_wall_secs: $SECONDS" >>"$OUT/machine.txt"
    top -b -n 1 -w 200 2>/dev/null | head -20 >"$OUT/top-after.txt" || true
    python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]

def load(name):
    p = os.path.join(out, name)
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return None

def fmt(x, nd=0):
    if x is None:
        return "–"
    if isinstance(x, float) and nd == 0:
        return f"{x:,.0f}"
    if isinstance(x, (int,)) and nd == 0:
        return f"{x:,}"
    return f"{x:,.{nd}f}"

machine = {}
fsync_lines = []
for line in open(os.path.join(out, "machine.txt")):
    k, _, v = line.rstrip("\n").partition(": ")
    if k == "fdatasync_line":
        fsync_lines.append(v.strip())
    else:
        machine[k] = v
runs = {}
if os.path.exists(os.path.join(out, "runs.tsv")):
    for line in open(os.path.join(out, "runs.tsv")):
        n, rc, wall, note = line.rstrip("\n").split("\t")
        runs[n] = (int(rc), int(wall), note)

L = []
w = L.append
w(f"# Starcite benchmark summary\n")
w(f"Run {machine.get('date_utc','?')} — total wall time **{machine.get('total_wall_secs','?')} s** (build included). "
  f"Commit `{machine.get('git_commit','?')}`, source fingerprint `{machine.get('source_sha256','?')}`.\n")
w("All numbers below come from this one session on a shared, noisy machine; the load generator "
  "(`starcite-bench`, one thread) runs on the same cores as the server under test. "
  "CPU % columns are of one core (200% = both cores) over the measured phase, as reported by `starcite-bench` "
  "(server: /proc/<pid>/stat of --server-pid; bench: its own getrusage); see *Machine noise* for what else ran.\n")
w("## Machine\n")
w("| fact | value |\n|---|---|")
for k in ("nproc", "cpu_model", "kernel", "memory_mib", "data_fs", "ulimit_nofile", "rustc", "nginx", "redis", "load_before", "busy_cores_before", "load_after"):
    w(f"| {k} | {machine.get(k,'?')} |")
for l in fsync_lines:
    w(f"| fdatasync (pg_test_fsync -s 2) | `{l}` |")
w("")

def lat(d, key):
    try:
        h = d["latency_us"][key]
        return h["p50"], h["p99"], h["p999"]
    except Exception:
        return None, None, None

def status(name, d):
    rc = runs.get(name, (None,))[0]
    if d is None:
        return f"FAILED (no JSON, exit {rc})"
    v = d.get("verification", {})
    s = "ok" if v.get("passed", False) else f"VIOLATIONS {v.get('violations',{})}"
    if d.get("errors_total"):
        s += f", errors {d.get('errors')}"
    if rc not in (0, None):
        s += f", exit {rc}"
    return s

# ---- baselines
ng, ngio = load("nginx-get.json"), load("nginx-get.io.json")
rd, rdio = load("redis-xadd.json"), load("redis-xadd.io.json")
w("## Baselines (same load shape as the Starcite peak append run: -c 8 -d 16)\n")
w("| run | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU % (all its processes) | server CPU µs/op | bytes written/op | bench CPU % | status |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for name, d, io, key in (("nginx-get", ng, ngio, "get"), ("redis-xadd", rd, rdio, "xadd")):
    if d is None:
        w(f"| {name} | – | – | – | – | – | – | – | – | {status(name, d)} |")
        continue
    p50, p99, p999 = lat(d, key)
    scpu = io.get("server_cpu_secs_whole_run") if io else None
    wall = d["cpu"]["wall_secs"]
    # whole-run CPU (incl. 1 s warmup) over whole-run ops is not available; use the bench's
    # measured-phase number when it has one (redis), else the whole-run delta over the measured wall+1s warmup
    if d["cpu"].get("server_cpu_secs"):
        cpu_pct = d["cpu"]["server_cpu_percent"]; cpu_s = d["cpu"]["server_cpu_secs"]
    else:
        cpu_s = scpu; cpu_pct = (scpu / (wall + 1.0) * 100) if scpu is not None else None
    us = (cpu_s / d["ok"] * 1e6) if (cpu_s and d["ok"]) else None
    wb = (io.get("write_bytes") / d["ok"]) if (io and io.get("write_bytes") is not None and d["ok"]) else None
    w(f"| {name} | {fmt(d['throughput_ops_per_sec'])} | {fmt(p50)} | {fmt(p99)} | {fmt(p999)} | {fmt(cpu_pct,1)} | {fmt(us,1)} | {fmt(wb)} | {fmt(d['cpu']['cpu_percent'],1)} | {status(name, d)} |")
if rd:
    w(f"\nRedis durability on record: appendonly={rd['extra'].get('redis_appendonly')}, appendfsync={rd['extra'].get('redis_appendfsync')}.")
w("\nnginx CPU is summed over the master and its workers from /proc/<pid>/stat over the whole run (1 s warmup + measured phase); "
  "bytes written/op for Redis is `write_bytes` of the redis-server process (/proc/<pid>/io) over the whole run (warmup included) / acked XADDs of the measured phase — an upper bound.\n")

# ---- Starcite
def sc_rows(label):
    rows = []
    for suffix, key in (("append", "append"), ("append-1session", "append"), ("append-openloop", "append"),
                        ("mix", "append"), ("retry-storm", "original")):
        name = f"{label}-{suffix}"
        d, io = load(name + ".json"), load(name + ".io.json")
        rows.append((name, d, io, key))
    return rows

def appends_acked(d):
    if d is None:
        return None
    if d["scenario"] == "mix":
        return d["outcomes"].get("append_ok", 0)
    if d["scenario"] == "retry-storm":
        return d["ok"] // 2
    return d["ok"]

summary = {}
for label, title in (("all", "all cores"), ("one", "STARCITE_CORES=1")):
    w(f"## Starcite, {title}\n")
    w("| run | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU % | CPU µs/append | disk bytes written/event | log bytes/event | events/fsync | bench CPU % | status |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, d, io, key in sc_rows(label):
        if d is None:
            w(f"| {name} | – | – | – | – | – | – | – | – | – | – | {status(name, d)} |")
            continue
        p50, p99, p999 = lat(d, key)
        acked = appends_acked(d)
        scpu = d["cpu"].get("server_cpu_secs")
        us = scpu / acked * 1e6 if (scpu is not None and acked) else None
        ev = io.get("events_appended") if io else None
        wb = io["write_bytes"] / ev if (io and ev) else None
        lb = io["log_bytes_written"] / ev if (io and ev) else None
        epf = ev / io["log_fsyncs"] if (io and ev and io.get("log_fsyncs")) else None
        w(f"| {name} | {fmt(d['throughput_ops_per_sec'])} | {fmt(p50)} | {fmt(p99)} | {fmt(p999)} | {fmt(d['cpu'].get('server_cpu_percent'),1)} | {fmt(us,1)} | {fmt(wb)} | {fmt(lb)} | {fmt(epf,1)} | {fmt(d['cpu']['cpu_percent'],1)} | {status(name, d)} |")
        summary[name] = dict(tput=d["throughput_ops_per_sec"], p99=p99, us=us, wb=wb)
    opl = load(f"{label}-append-openloop.json")
    if opl:
        w(f"\nOpen loop rate: {fmt(opl['params']['load']['rate'])} appends/s (half of the closed-loop peak above); max backlog {opl['extra'].get('max_backlog','?')}.")
    w("\nops/s for `retry-storm` counts originals and retries; CPU µs/append there is per stored event (original). "
      "For `mix`, ops/s is reads + appends, CPU µs/append is server CPU / acked appends (reads' CPU included). "
      "Disk bytes written/event = `write_bytes` delta of the server (/proc/<pid>/io, segment zero-fill included) / events appended (metrics delta); "
      "log bytes/event = the log engine's own counter (whole 4 KiB blocks).\n")
    # tail
    t = load(f"{label}-tail.json")
    w(f"**Tail fan-out ({title})**\n")
    if t:
        ex = t["extra"]; p = t["params"]
        c2d = lat(t, "commit_to_delivery"); s2d = lat(t, "send_to_delivery"); ack = lat(t, "append_ack")
        w("| tailers | sessions | append rate/s | appends acked/s | deliveries/s | commit→delivery p50 / p99 / p99.9 µs | send→delivery p99 µs | append ack p99 µs | server RSS KiB/tail | tails open in s | server CPU % | bench CPU % | status |")
        w("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
        w(f"| {fmt(ex['tails_open'])} | {fmt(p['sessions'])} | {fmt(p['append_rate'])} | {fmt(t['throughput_ops_per_sec'])} | {fmt(ex['deliveries_per_sec'])} | {fmt(c2d[0])} / {fmt(c2d[1])} / {fmt(c2d[2])} | {fmt(s2d[1])} | {fmt(ack[1])} | {fmt(ex.get('server_rss_kib_per_tail'),1)} | {fmt(ex['tails_open_secs'],2)} | {fmt(t['cpu'].get('server_cpu_percent'),1)} | {fmt(t['cpu']['cpu_percent'],1)} | {status(label+'-tail', t)} |")
        summary[f"{label}-tail"] = dict(p99=c2d[1], tailers=ex["tails_open"])
    else:
        w(f"tail: {status(label+'-tail', t)}")
    # replay
    r = load(f"{label}-replay.json")
    w(f"\n**Replay of one session ({title})**\n")
    if r:
        w("| mode | events | seconds | events/s | MiB/s | first event ms | server CPU s | bench CPU % | status |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for m in r["extra"]["modes"]:
            w(f"| {m['mode']} | {fmt(m['events'])} | {fmt(m['secs'],3)} | {fmt(m['events_per_sec'])} | {fmt(m['mib_per_sec'],1)} | {fmt(m['first_event_ms'],1)} | {fmt(m.get('server_cpu_secs'),2)} | {fmt(m.get('bench_cpu_percent'),1)} | {status(label+'-replay', r)} |")
            summary[f"{label}-replay-{m['mode']}"] = m["secs"]
        f = r["extra"].get("fill") or {}
        if f:
            w(f"\nFill: {fmt(f.get('appended'))} appends in {fmt(f.get('secs'),1)} s ({fmt(f.get('appends_per_sec'))}/s, 8×32 pipelined, one session).")
    else:
        w(f"replay: {status(label+'-replay', r)}")
    # recovery of the scenario data dir
    rc = load(f"{label}-recovery.json")
    try:
        nlog = int(open(os.path.join(out, f"{label}-events-in-log.txt")).read().strip())
    except Exception:
        nlog = None
    w(f"\n**Recovery of this configuration's data dir ({title})**\n")
    if rc:
        ex = rc["extra"]; rs = ex["restarts"][0]
        w("| events in log | data dir bytes | first start → ready s | kill -9 → restart → ready s | listening after s | server CPU s to ready | RSS at ready KiB | status |")
        w("|---:|---:|---:|---:|---:|---:|---:|---|")
        w(f"| {fmt(nlog)} | {fmt(ex['data_dir_bytes'])} | {fmt(ex['first_start_ready_secs'],3)} | {fmt(rs['ready_secs'],3)} | {fmt(rs['listen_secs'],3)} | {fmt(rs.get('server_cpu_secs_to_ready'),2)} | {fmt(rs.get('server_rss_kib_at_ready'))} | {status(label+'-recovery', rc)} |")
        summary[f"{label}-recovery"] = (nlog, rs["ready_secs"])
    else:
        w(f"recovery: {status(label+'-recovery', rc)}")
    w("")

# ---- large recovery
w("## Large recovery (all cores)\n")
fill = load("recovery-large-fill.json")
big = load("recovery-large.json")
if fill:
    w(f"Target {fmt(fill['target_events'])} events; the log held **{fmt(fill['events_in_log'])}** events after {fill['fill_secs']} s of filling "
      f"({fill['chunks']} chunks of `append -c 16 -d 32 --sessions 16 --requests ≤1000000`; disk bytes written/event "
      f"{fmt(fill['write_bytes']/max(1,fill['events_in_log']))}; server CPU µs/event {fmt(fill['server_cpu_secs']/max(1,fill['events_in_log'])*1e6,1)}).")
    if fill.get("note"):
        w(f"\n**Not the full target:** {fill['note']}.")
if big:
    ex = big["extra"]; rs = ex["restarts"][0]
    w("\n| events in log | data dir bytes | start after kill -9 → ready s (1st) | restart after kill -9 → ready s (2nd) | server CPU s to ready | RSS at ready KiB | status |")
    w("|---:|---:|---:|---:|---:|---:|---|")
    w(f"| {fmt(fill['events_in_log'] if fill else None)} | {fmt(ex['data_dir_bytes'])} | {fmt(ex['first_start_ready_secs'],3)} | {fmt(rs['ready_secs'],3)} | {fmt(rs.get('server_cpu_secs_to_ready'),2)} | {fmt(rs.get('server_rss_kib_at_ready'))} | {status('recovery-large', big)} |")
    summary["large-recovery"] = ((fill or {}).get("events_in_log"), rs["ready_secs"], ex["first_start_ready_secs"])
else:
    w(f"large recovery: {status('recovery-large', big)}")
w("")

# ---- ratios
w("## Ratios (same session)\n")
w("| ratio | value |\n|---|---:|")
def ratio(a, b):
    return (a / b) if (a is not None and b) else None
sa = summary.get("all-append", {}).get("tput")
s1 = summary.get("one-append", {}).get("tput")
ngt = ng["throughput_ops_per_sec"] if ng else None
rdt = rd["throughput_ops_per_sec"] if rd else None
w(f"| Starcite append (all cores) / nginx GET | {fmt(ratio(sa, ngt),3)} |")
w(f"| Starcite append (all cores) / Redis XADD appendfsync always | {fmt(ratio(sa, rdt),3)} |")
w(f"| Starcite append (STARCITE_CORES=1) / nginx GET | {fmt(ratio(s1, ngt),3)} |")
w(f"| Starcite append (STARCITE_CORES=1) / Redis XADD | {fmt(ratio(s1, rdt),3)} |")
for suffix in ("append", "append-1session", "mix", "retry-storm"):
    a, b = summary.get(f"all-{suffix}", {}).get("tput"), summary.get(f"one-{suffix}", {}).get("tput")
    w(f"| {suffix}: STARCITE_CORES=1 / all cores | {fmt(ratio(b, a),3)} |")
for mode in ("ws1000", "page1000"):
    a, b = summary.get(f"all-replay-{mode}"), summary.get(f"one-replay-{mode}")
    w(f"| replay {mode} time: STARCITE_CORES=1 / all cores | {fmt(ratio(b, a),3)} |")
w("")

# ---- targets
w("## Targets\n")
w("| target | measured | verdict |\n|---|---|---|")
def verdict(ok, miss):
    return "met" if ok else f"missed ({miss})"
if sa and ngt:
    r = sa / ngt
    w(f"| durable append ≥ 50% of the nginx ceiling | {r*100:.1f}% ({fmt(sa)} vs {fmt(ngt)} ops/s) | {verdict(r >= 0.5, f'needs {fmt(0.5*ngt)} ops/s, {0.5*ngt/sa:.1f}× the measured')} |")
if sa and rdt:
    r = sa / rdt
    w(f"| append ≥ Redis XADD appendfsync always | {r:.2f}× ({fmt(sa)} vs {fmt(rdt)} ops/s) | {verdict(r >= 1, f'{(1-r)*100:.0f}% below')} |")
opl = load("all-append-openloop.json")
if opl:
    p99 = lat(opl, "append")[1]
    w(f"| p99 append < 2 ms at half peak ({fmt(opl['params']['load']['rate'])}/s, all cores) | {fmt(p99)} µs | {verdict(p99 < 2000, f'{p99/2000:.1f}× the target')} |")
t = summary.get("all-tail")
if t:
    tp99, tk = t["p99"], t["tailers"]
    miss = []
    if tk < 10000:
        miss.append(f"only {fmt(tk)} tails")
    if tp99 >= 5000:
        miss.append(f"{tp99/5000:.1f}× the target")
    w(f"| tail delivery p99 < 5 ms with 10,000 tails | {fmt(tp99)} µs with {fmt(tk)} tails | {verdict(not miss, '; '.join(miss))} |")
for mode in ("ws1000", "page1000"):
    s = summary.get(f"all-replay-{mode}")
    if s is not None:
        w(f"| replay of 1M events < 2 s ({mode}, all cores) | {s:.3f} s | {verdict(s < 2, f'{s/2:.2f}× the target')} |")
lr = summary.get("large-recovery")
if lr:
    n, secs, first = lr
    full = (n or 0) >= 10_000_000
    w(f"| recovery of 10M events < 10 s | {secs:.3f} s (restart) / {first:.3f} s (1st start) with {fmt(n)} events | " +
      (verdict(secs < 10, f'{secs/10:.1f}× the target') if full else
       f"not measured at 10M (only {fmt(n)} fit the budget); at {fmt(n)}: {'under' if secs < 10 else 'over'} 10 s") + " |")
w("")

# ---- noise
w("## Machine noise during each run\n")
w("CPU in cores (CPU seconds / wall seconds of the run, setup and verification included). `other` = machine-wide busy CPU "
  "(cores × wall − idle − iowait, /proc/stat) − server − bench (and, for recovery, the servers it started): other tenants of this shared machine plus kernel threads "
  "(I/O completion, loopback softirq work not charged to a process). Out of 2.0 cores.\n")
if os.path.exists(os.path.join(out, "quiet.tsv")):
    w("Before each phase the suite waits (up to BENCH_QUIET_WAIT_SECS) for the machine to be idle (< 0.3 cores busy over 1 s):\n")
    w("| phase | waited s | busy cores when it started |\n|---|---:|---:|")
    for line in open(os.path.join(out, "quiet.tsv")):
        ph, waited, busy = line.rstrip("\n").split("\t")
        w(f"| {ph} | {waited} | {busy} |")
    w("")
w("| run | wall s | machine busy | server | bench (+children) | other | steal |\n|---|---:|---:|---:|---:|---:|---:|")
for n in runs:
    e = load(n + ".env.json")
    if not e or e["wall_secs"] <= 0:
        continue
    ws = e["wall_secs"]
    w(f"| {n} | {ws:.1f} | {e['machine_busy_cpu_secs']/ws:.2f} | {e['server_cpu_secs']/ws:.2f} | {e['children_cpu_secs']/ws:.2f} | {e['other_cpu_secs']/ws:.2f} | {e['steal_secs']/ws:.2f} |")
w("")

# ---- run list
w("## Runs\n")
w("| run | exit | wall s | raw output | command |\n|---|---:|---:|---|---|")
for n, (rc, wall, note) in runs.items():
    cmdf = os.path.join(out, n + ".cmd")
    cmd = open(cmdf).read().strip() if os.path.exists(cmdf) else note
    w(f"| {n} | {rc} | {wall} | `{n}.txt` | `{cmd}` |")
failed = [n for n, (rc, _, _) in runs.items() if rc != 0]
w("")
w("Failures: " + (", ".join(failed) if failed else "none") + "\n")
open(os.path.join(out, "summary.md"), "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
}

# ---------------------------------------------------------------- modes -------------
profile_mode() {
    need curl curl; need python3 python3
    need valgrind valgrind
    have perf || apt_install linux-perf || true
    build
    local P=$OUT/profile dir=$DATA/profile port vp rc=0
    mkdir -p "$P"
    # 1. callgrind: user-space instructions of the append hot path, STARCITE_CORES=1
    port=$(free_port)
    mkdir -p "$dir"
    log "profile: callgrind on starcite (STARCITE_CORES=1) port $port"
    PORT=$port STARCITE_CORES=1 STARCITE_RAFT_DATA_DIR=$dir valgrind --tool=callgrind --callgrind-out-file="$P/callgrind.out" \
        "$SERVER_BIN" >"$P/callgrind-server.log" 2>&1 &
    vp=$!
    STARTED_PIDS+=("$vp")
    local i
    for i in $(seq 600); do curl -sf --max-time 1 "http://$LOOP:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
    "$BENCH_BIN" append --addr "$LOOP:$port" -c 8 -d 16 --sessions 64 --requests 1000 >"$P/warmup.txt" 2>&1 || true
    callgrind_control -z "$vp" >/dev/null
    "$BENCH_BIN" append --addr "$LOOP:$port" -c 8 -d 16 --sessions 64 --payload-bytes $PAYLOAD --requests 5000 --server-pid "$vp" \
        --json "$P/callgrind-append.json" >"$P/callgrind-append.txt" 2>&1 || rc=$?
    callgrind_control -d "$vp" >/dev/null
    sleep 1
    stop_pid "$vp"
    rm -rf "$dir"
    local cg
    cg=$(ls -t "$P"/callgrind.out.* 2>/dev/null | head -1)
    if [ -n "$cg" ]; then
        callgrind_annotate --auto=no --inclusive=yes "$cg" >"$P/callgrind-inclusive.txt" 2>/dev/null || true
        callgrind_annotate --auto=no --inclusive=no "$cg" >"$P/callgrind-exclusive.txt" 2>/dev/null || true
        python3 - "$cg" "$P/callgrind-top.md" "$rc" <<'PY'
# Self and inclusive instruction counts per function, read from the callgrind file itself
# (callgrind_annotate splits functions by inlined source file). Inclusive = self + calls
# to other functions (direct self-recursion not double counted).
import re, sys, collections
path, outp = sys.argv[1], sys.argv[2]
names = {}
def resolve(tok):
    m = re.match(r"\((\d+)\)(?:\s+(.*))?$", tok.strip())
    if not m:
        return tok.strip()
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), tok)
self_c = collections.Counter(); extra = collections.Counter(); ncalls = collections.Counter()
fn = target = call = None; total = None
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        continue
    if line.startswith("fn="):
        fn = resolve(line[3:]); continue
    if line.startswith(("cfn=", "cfni=")):
        target = resolve(line.split("=", 1)[1]); continue
    if line.startswith("calls="):
        call = (target, int(line[6:].split()[0])); continue
    if line.startswith(("summary:", "totals:")):
        total = int(line.split()[1]); continue
    if re.match(r"^[a-z]+[=:]", line):
        continue
    parts = line.split()
    if len(parts) < 2 or fn is None:
        continue
    try:
        cost = int(parts[1])
    except ValueError:
        continue
    if call:
        if call[0] != fn:
            extra[fn] += cost
        ncalls[call[0]] += call[1]
        call = None
    else:
        self_c[fn] += cost
tot = total or sum(self_c.values())
incl = {f: self_c[f] + extra[f] for f in set(self_c) | set(extra)}
with open(outp, "w") as o:
    o.write(f"Total {tot:,} instructions (Ir) over the profiled appends.\n")
    for title, items in (("self (exclusive)", self_c.most_common(30)),
                         ("inclusive", sorted(incl.items(), key=lambda x: -x[1])[:45])):
        o.write(f"\n### callgrind {title}\n\n| Ir | % of total | calls | function |\n|---:|---:|---:|---|\n")
        for f, n in items:
            o.write(f"| {n:,} | {100*n/tot:.1f} | {ncalls.get(f,0):,} | `{f[:150]}` |\n")
print(open(outp).read())
PY
    fi
    # 2. perf, sampling on the cpu-clock software event (hardware counters may be absent in VMs)
    if have perf && perf record -e cpu-clock -o "$P/perf-probe.data" -- true >/dev/null 2>&1; then
        port=$(free_port); mkdir -p "$dir"
        PORT=$port STARCITE_CORES=1 STARCITE_RAFT_DATA_DIR=$dir "$SERVER_BIN" >"$P/perf-server.log" 2>&1 &
        local sp=$!
        STARTED_PIDS+=("$sp")
        for i in $(seq 600); do curl -sf --max-time 1 "http://$LOOP:$port/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
        perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -p "$sp" -o "$P/perf.data" -- sleep 6 >"$P/perf-record.txt" 2>&1 &
        local pp=$!
        STARTED_PIDS+=("$pp")
        sleep 0.5
        "$BENCH_BIN" append --addr "$LOOP:$port" -c 8 -d 16 --sessions 64 --payload-bytes $PAYLOAD --duration-secs 5 --server-pid "$sp" \
            --json "$P/perf-append.json" >"$P/perf-append.txt" 2>&1 || true
        wait "$pp" 2>/dev/null || true
        stop_pid "$pp"
        stop_pid "$sp"
        rm -rf "$dir"
        perf report -i "$P/perf.data" --no-children --sort dso,symbol --stdio --percent-limit 0.7 -g none >"$P/perf-self.txt" 2>/dev/null || true
        perf report -i "$P/perf.data" --children --sort symbol --stdio --percent-limit 3 -g none >"$P/perf-children.txt" 2>/dev/null || true
        perf report -i "$P/perf.data" --no-children --sort dso --stdio -g none >"$P/perf-dso.txt" 2>/dev/null || true
        perf report -i "$P/perf.data" --no-children --sort comm --stdio -g none >"$P/perf-comm.txt" 2>/dev/null || true
        rm -f "$P/perf-probe.data"
    else
        log "perf record -e cpu-clock does not work here; callgrind only"
    fi
    log "profile written to $P"
}

micro_mode() {
    log "cargo bench --bench log_append / --bench record_codec in $REPO (writes $REPO/target/bench-log)"
    (cd "$REPO" && cargo bench --locked --bench log_append) >"$OUT/micro-log_append.txt" 2>&1 || log "log_append failed"
    (cd "$REPO" && cargo bench --locked --bench record_codec) >"$OUT/micro-record_codec.txt" 2>&1 || log "record_codec failed"
    grep -vE '^\s*(Compiling|Finished|Running|Blocking|Downloaded|Downloading)' "$OUT/micro-log_append.txt" "$OUT/micro-record_codec.txt" >&2 || true
}

# Build, raise the open-file limit, size the tail run, and start the runs table.
prepare_runs() {
    build
    raise_nofile
    local nofile
    nofile=$(ulimit -n)
    TAILERS=${BENCH_TAILERS:-$(((nofile - 512) < 10000 ? nofile - 512 : 10000))}
    [ "$TAILERS" -ge 1 ] || TAILERS=1
    cd "$OUT"
    : >"$OUT/runs.tsv"
}

suite_mode() {
    log "results: $OUT; data: $DATA; budget ${BUDGET}s"
    need curl curl
    need python3 python3
    [ -x "$NGINX" ] || need nginx nginx-light nginx
    [ -x "$REDIS" ] || need redis-server redis-server
    [ -n "$(pg_test_fsync_bin)" ] || apt_install postgresql-15 || die "cannot install postgresql-15 (pg_test_fsync)"
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    REDIS=$(command -v redis-server || echo /usr/bin/redis-server)
    prepare_runs
    machine_facts
    wait_quiet baselines
    run_nginx
    run_redis
    wait_quiet starcite-all
    starcite_suite all ""
    wait_quiet starcite-one
    starcite_suite one 1
    wait_quiet recovery-large
    recovery_large
    write_summary >/dev/null
    log "done in ${SECONDS}s: $OUT/summary.md"
    if awk -F'\t' '$2 != 0 { bad = 1 } END { exit !bad }' "$OUT/runs.tsv"; then
        log "some runs failed or did not verify (see the Runs table in summary.md)"
        exit 1
    fi
}

# One scenario by name, all cores, a fresh data dir; the results folder has its JSON.
scenario_mode() {
    log "results: $OUT; data: $DATA; scenario $MODE; commit $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
    need curl curl
    need python3 python3
    prepare_runs
    start_starcite all "$DATA/starcite-all" ""
    sc_scenario all "$MODE"
    stop_pid "$SC_PID"
    [ "${BENCH_KEEP_DATA:-0}" = 1 ] || rm -rf "$DATA"
    log "done in ${SECONDS}s: $OUT/all-$MODE.json"
    awk -F'\t' '$2 != 0 { bad = 1 } END { exit bad }' "$OUT/runs.tsv"
}

case "$MODE" in
all) suite_mode ;;
profile) profile_mode ;;
micro) micro_mode ;;
*) scenario_mode ;;
esac
