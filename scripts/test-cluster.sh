#!/usr/bin/env bash
# Check SPEC §7's cluster primitives against the local cluster of scripts/start-cluster.sh:
# create; append through every node with expected_seq guards; an idempotent retry through
# two different nodes; a stale expected_seq refused; identical pages on every node; a tail
# (SSE) through a node that took none of the writes. Exits non-zero at the first failure.
#   scripts/test-cluster.sh          (NODES as for start-cluster.sh; needs curl)
set -uo pipefail
NODES=${NODES:-5}
BASE_PORT=${BASE_PORT:-4000}
session="cluster-check-$(date +%s)-$$"
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; failures=$((failures + 1)); }
port_of() { echo $((BASE_PORT + $1 - 1)); }
# post PORT PATH BODY -> prints "STATUS BODY"
post() { curl -s -m 10 -o /tmp/starcite-check.$$ -w '%{http_code}' -X POST "http://127.0.0.1:$1$2" -H 'content-type: application/json' -d "$3"; echo " $(cat /tmp/starcite-check.$$)"; }
get() { curl -s -m 10 "http://127.0.0.1:$1$2"; }
trap 'rm -f /tmp/starcite-check.$$ /tmp/starcite-tail.$$' EXIT

for i in $(seq 1 "$NODES"); do
  r=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(port_of "$i")/health/ready")
  [ "$r" = 200 ] && pass "node $i ready" || fail "node $i /health/ready answered $r"
done

r=$(post "$(port_of 1)" /v1/sessions "{\"id\":\"$session\"}")
case "$r" in 201*) pass "create $session through node 1" ;; *) fail "create: $r" ;; esac

# The last node takes no writes: it will tail them.
writers=$((NODES > 1 ? NODES - 1 : 1))
tail_port=$(port_of "$NODES")
curl -s -N -m 20 -H 'accept: text/event-stream' "http://127.0.0.1:$tail_port/v1/sessions/$session/tail?cursor=0" >/tmp/starcite-tail.$$ &
tail_pid=$!

seq=0
for i in $(seq 1 "$writers"); do
  r=$(post "$(port_of "$i")" "/v1/sessions/$session/append" "{\"type\":\"check\",\"payload\":{\"node\":$i},\"actor\":\"test-cluster\",\"expected_seq\":$seq}")
  case "$r" in 201*"\"seq\":$((seq + 1)),"*) pass "append through node $i with expected_seq=$seq"; seq=$((seq + 1)) ;; *) fail "append through node $i: $r" ;; esac
done

r=$(post "$(port_of 1)" "/v1/sessions/$session/append" '{"type":"check","payload":{},"actor":"test-cluster","expected_seq":0}')
case "$r" in 409*expected_seq_conflict*) pass "stale expected_seq refused (409)" ;; *) fail "stale expected_seq: $r" ;; esac

body='{"type":"check","payload":{"once":true},"actor":"test-cluster","idempotency_key":"check-once"}'
r1=$(post "$(port_of 1)" "/v1/sessions/$session/append" "$body")
r2=$(post "$(port_of $((NODES > 1 ? 2 : 1)))" "/v1/sessions/$session/append" "$body")
case "$r1" in 201*"\"seq\":$((seq + 1)),"*"\"deduped\":false"*) pass "idempotent append through node 1" ;; *) fail "idempotent append: $r1" ;; esac
case "$r2" in 201*"\"seq\":$((seq + 1)),"*"\"deduped\":true"*) pass "its retry through node 2 deduped to the same seq" ;; *) fail "idempotent retry through node 2: $r2" ;; esac
seq=$((seq + 1))

first=$(get "$(port_of 1)" "/v1/sessions/$session/events?cursor=0&limit=1000")
for i in $(seq 1 "$NODES"); do
  page=$(get "$(port_of "$i")" "/v1/sessions/$session/events?cursor=0&limit=1000")
  [ "$page" = "$first" ] && pass "node $i returns the same page" || fail "node $i page differs: $page"
done
case "$first" in *"\"last_seq\":$seq}"*) pass "page has all $seq events" ;; *) fail "page: $first" ;; esac

for _ in $(seq 1 100); do
  [ "$(grep -c '^id: ' /tmp/starcite-tail.$$)" -ge "$seq" ] && break
  sleep 0.1
done
kill "$tail_pid" 2>/dev/null
ids=$(grep '^id: ' /tmp/starcite-tail.$$ | sed 's/^id: //' | tr -d '\r' | tr '\n' ' ')
want=$(seq 1 "$seq" | tr '\n' ' ')
[ "$ids" = "$want" ] && pass "SSE tail through node $NODES (took no writes) delivered seqs $want" || fail "SSE tail through node $NODES got ids '$ids', want '$want'"

if [ $failures -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all cluster checks passed"
