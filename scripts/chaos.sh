#!/usr/bin/env bash
# The fault campaign (issue #10, docs/RELIABILITY.md): a 5-node cluster of test hosts in
# network namespaces, clients recording every operation, a nemesis (kill -9, SIGSTOP,
# partitions, one-way cuts, packet loss, delay, rolling restarts, emptied data dirs, damaged logs),
# then the history checker's verdict. Needs root (namespaces, nftables).
#
#   scripts/chaos.sh --minutes 30 --seed 7            # long campaign, release build
#   scripts/chaos.sh --seconds 60 --seed 1 --seed 2   # several short ones (CI does this)
#
# Options: --minutes N | --seconds N (per seed, default 10 minutes), --seed S (repeatable,
# default 1), --faults a,b,c (subset; default all, see chaos/campaign.py), --out DIR
# (default target/chaos/<timestamp>), and STARCITE_BIN=path to use a built binary instead
# of `cargo build --release`. Each seed writes DIR/seed-S/report.md, report.json,
# history.jsonl and every node's log. Exit: 0 all seeds valid, 1 a violation, 2 the
# campaign could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
seeds=()
faults=""
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --seed) seeds+=("$2"); shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "chaos.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
[ "$(id -u)" = 0 ] || { echo "chaos.sh: needs root (network namespaces, nftables)" >&2; exit 2; }
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
bin=${STARCITE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin starcite >&2
  bin=target/release/starcite
fi
out=${out:-target/chaos/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
status=0
for seed in "${seeds[@]}"; do
  echo "== chaos: seed $seed, ${seconds}s, report in $out/seed-$seed"
  set +e
  python3 chaos/campaign.py --binary "$bin" --seconds "$seconds" --seed "$seed" ${faults:+--faults "$faults"} --out "$out/seed-$seed"
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    echo "== chaos: seed $seed FAILED (exit $rc): $out/seed-$seed/report.md" >&2
    [ $status -eq 1 ] || status=$rc
  fi
done
exit $status
