"""History checker for the fault campaign (issue #10, docs/RELIABILITY.md).

Input: a *history* — every operation the campaign's clients attempted, each with its
invoke and complete times (one monotonic clock: all clients run in one process) and its
outcome — and the *final state*: every session as read, after healing, through every
node. Output: a list of violations (empty = the run kept Starcite's promise).

Vocabulary (Jepsen's): an attempt's outcome is
  "ok"   — acknowledged (201 for an append, 200 for a read);
  "fail" — definitely not applied (a 4xx, or a connection refused before anything was sent);
  "info" — indeterminate (503, timeout, connection reset after the request was sent):
           it may or may not have taken effect.

An append attempt carries `op`: the id of the *logical* append. Every event a client
sends carries its op id in `payload.op` (unique), and retries of an indeterminate append
reuse the op, its exact content and its idempotency key — so the op id names the event
wherever it ends up.

Rules checked (issue #10 §3):
  R1 every node returns the same history for every session;
  R2 seqs are 1..N without gaps;
  R3 an op with an acknowledged attempt is present exactly once, at the acknowledged seq,
     with identical content (numbers compared by their exact text);
  R4 no event that was never sent (unknown op, or content that differs from what was sent);
  R5 an op whose every attempt failed definitely is absent;
  R6 an acknowledged expected_seq append has seq = expected_seq + 1;
  R7 real-time order: if append A was acknowledged before append B was invoked (same
     session) and both are present, seq(A) < seq(B);
  R8 a read invoked after A was acknowledged reports last_seq >= seq(A); every event a
     read returned equals the final history's event at that seq;
  R9 an op present at all is present at most once (indeterminate retries with the same
     idempotency key included);
  R10 all acknowledged attempts of one op agree on its seq.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

CONTENT_FIELDS = ("type", "payload", "actor", "source", "metadata", "refs")


def exact_json(text: str) -> Any:
    """Parse JSON keeping every number as its exact text (so 1.0 != 1, as sent != as returned)."""
    return json.loads(text, parse_float=lambda s: ("num", s), parse_int=lambda s: ("num", s))


def content_of(event: dict) -> dict:
    """The fields an append sets, with the SPEC's defaults for omitted ones."""
    out = {k: event.get(k) for k in CONTENT_FIELDS}
    if out["metadata"] is None:
        out["metadata"] = {}
    if out["refs"] is None:
        out["refs"] = {}
    return out


@dataclass
class Violation:
    rule: str
    session: str | None
    message: str

    def to_json(self) -> dict:
        return {"rule": self.rule, "session": self.session, "message": self.message}


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.violations

    def add(self, rule: str, session: str | None, message: str) -> None:
        self.violations.append(Violation(rule, session, message))


def op_of(event: dict) -> Any:
    payload = event.get("payload")
    if isinstance(payload, dict):
        op = payload.get("op")
        if isinstance(op, tuple) and op[0] == "num":
            return int(op[1])
    return None


def check(history: list[dict], final: dict[str, dict[str, list[dict] | None]], max_reports: int = 50) -> Verdict:
    """Check `history` against `final`.

    history: attempts, each a dict with
        kind: "append" | "read"; session; invoke, complete (seconds, one clock);
        outcome: "ok" | "fail" | "info"; node (for the report)
      appends also: op (int), body (the JSON text sent), expected_seq (int or None),
        seq (acknowledged seq when ok)
      reads also: last_seq (reported when ok), events (list of event dicts, exact_json-parsed)
    final: node -> session -> list of event dicts (exact_json-parsed, in the order returned),
        or None when that node could not be read.
    """
    verdict = Verdict()

    # R1: one history per session, the same on every node.
    truth: dict[str, list[dict]] = {}
    sessions = sorted({s for per_node in final.values() for s in per_node} | {a["session"] for a in history})
    for session in sessions:
        reference_node = None
        for node in sorted(final):
            events = final[node].get(session)
            if events is None:
                verdict.add("R1", session, f"node {node} returned no history for the session")
                continue
            if reference_node is None:
                reference_node, truth[session] = node, events
            elif events != truth[session]:
                diverge = next((i for i, (a, b) in enumerate(zip(events, truth[session])) if a != b), min(len(events), len(truth[session])))
                verdict.add(
                    "R1",
                    session,
                    f"node {node} ({len(events)} events) differs from node {reference_node} ({len(truth[session])} events) from position {diverge}",
                )
        truth.setdefault(session, [])

    # R2: 1..N.
    for session, events in truth.items():
        for i, event in enumerate(events, start=1):
            seq = event.get("seq")
            if seq != ("num", str(i)):
                verdict.add("R2", session, f"position {i} holds seq {seq!r}")
                break

    # Where each op ended up.
    sent: dict[int, dict] = {}
    attempts: dict[int, list[dict]] = {}
    for a in history:
        if a["kind"] == "append":
            attempts.setdefault(a["op"], []).append(a)
            sent.setdefault(a["op"], a)
    located: dict[int, list[tuple[str, int]]] = {}
    for session, events in truth.items():
        for i, event in enumerate(events, start=1):
            op = op_of(event)
            if op is None or op not in sent:
                verdict.add("R4", session, f"seq {i} holds an event no client sent: {json.dumps(event, default=str)[:200]}")
                continue
            first = sent[op]
            if first["session"] != session:
                verdict.add("R4", session, f"seq {i} holds op {op}, which was sent to session {first['session']}")
            elif content_of(exact_json(first["body"])) != content_of(event):
                verdict.add("R3", session, f"seq {i} (op {op}) differs from what was sent")
            located.setdefault(op, []).append((session, i))

    for op, where in located.items():
        if len(where) > 1:
            verdict.add("R9", where[0][0], f"op {op} is present {len(where)} times, at seqs {[s for _, s in where]}")

    acked_seq: dict[int, int] = {}
    for op, tries in attempts.items():
        session = tries[0]["session"]
        oks = [t for t in tries if t["outcome"] == "ok"]
        seqs = sorted({t["seq"] for t in oks})
        if len(seqs) > 1:
            verdict.add("R10", session, f"op {op} was acknowledged at different seqs {seqs}")
        where = located.get(op, [])
        if oks:
            acked_seq[op] = seqs[0]
            if not where:
                verdict.add("R3", session, f"op {op} acknowledged at seq {seqs[0]} is lost")
            elif where[0][1] != seqs[0]:
                verdict.add("R3", session, f"op {op} acknowledged at seq {seqs[0]} is at seq {where[0][1]}")
            for t in oks:
                if t.get("expected_seq") is not None and t["seq"] != t["expected_seq"] + 1 and not t.get("deduped"):
                    verdict.add("R6", session, f"op {op} sent with expected_seq {t['expected_seq']} was acknowledged at seq {t['seq']}")
        elif tries and all(t["outcome"] == "fail" for t in tries) and where:
            verdict.add("R5", session, f"op {op} failed definitely ({tries[-1].get('error')}) but is at seq {where[0][1]}")

    # R7: real-time order between acknowledged appends and later-invoked present appends.
    by_session: dict[str, list[tuple[float, int]]] = {}
    for op, seq in acked_seq.items():
        first_ack = min(t["complete"] for t in attempts[op] if t["outcome"] == "ok")
        by_session.setdefault(attempts[op][0]["session"], []).append((first_ack, seq))
    # Per session: acknowledgement times in order, and the largest seq acknowledged up to
    # each of them, so "largest seq acknowledged strictly before t" is one bisection (a scan
    # per operation made a 20-minute history take hours to check).
    ack_times: dict[str, list[float]] = {}
    ack_best: dict[str, list[int]] = {}
    for session, acks in by_session.items():
        acks.sort()
        ack_times[session] = [done for done, _ in acks]
        ack_best[session] = list(itertools.accumulate((seq for _, seq in acks), max))

    def acknowledged_before(session: str, t: float) -> int:
        n = bisect.bisect_left(ack_times.get(session, []), t)
        return ack_best[session][n - 1] if n else 0

    for op, where in located.items():
        session, seq_b = where[0]
        invoked_b = min(t["invoke"] for t in attempts[op])
        # The largest seq acknowledged strictly before B was first invoked must be below seq(B).
        best = acknowledged_before(session, invoked_b)
        if best >= seq_b:
            verdict.add("R7", session, f"op {op} (seq {seq_b}) was invoked after an append acknowledged at seq {best}")

    # R8: reads.
    reads = [a for a in history if a["kind"] == "read" and a["outcome"] == "ok"]
    for r in reads:
        session = r["session"]
        floor = acknowledged_before(session, r["invoke"])
        if r["last_seq"] < floor:
            verdict.add("R8", session, f"read on node {r.get('node')} invoked after seq {floor} was acknowledged reports last_seq {r['last_seq']}")
        events = truth.get(session, [])
        for event in r["events"]:
            seq = int(event["seq"][1])
            if seq < 1 or seq > len(events) or events[seq - 1] != event:
                verdict.add("R8", session, f"read on node {r.get('node')} returned seq {seq}, which differs from the final history")
                break

    verdict.stats = {
        "sessions": len(truth),
        "events": sum(len(e) for e in truth.values()),
        "append_ops": len(attempts),
        "append_attempts": sum(len(t) for t in attempts.values()),
        "acknowledged": len(acked_seq),
        "indeterminate_ops": sum(1 for op, t in attempts.items() if op not in acked_seq and any(x["outcome"] == "info" for x in t)),
        "indeterminate_present": sum(1 for op, t in attempts.items() if op not in acked_seq and op in located),
        "failed_ops": sum(1 for t in attempts.values() if all(x["outcome"] == "fail" for x in t)),
        "reads": len(reads),
        "nodes_read": len(final),
        "violations": len(verdict.violations),
        # Every violation counted by rule and session, also those not listed: where a
        # failed run's trouble is (one shard's sessions, or everywhere).
        "violations_by_rule_and_session": dict(
            sorted(collections.Counter(f"{v.rule} {v.session}" for v in verdict.violations).items())
        ),
    }
    if len(verdict.violations) > max_reports:
        extra = len(verdict.violations) - max_reports
        verdict.violations = verdict.violations[:max_reports] + [Violation("-", None, f"{extra} more violations not listed")]
    return verdict
