"""The fault campaign (issue #10; docs/RELIABILITY.md): a cluster of test hosts, clients
recording a history, a nemesis applying faults one or two at a time, then healing, reading
every session through every node, and the checker's verdict.

  python3 chaos/campaign.py --binary target/release/starcite --seconds 300 --seed 7 --out DIR

Exit status: 0 = the checker found no violation; 1 = violations (listed in the report);
2 = the campaign itself could not run (setup failed, a node never became ready).
Must run as root (network namespaces, nftables). Every loop is bounded by --seconds and
fixed timeouts; the namespaces are removed on exit.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checker import check  # noqa: E402
from clients import Recorder, Worker, create_sessions, num, read_history, tail_history  # noqa: E402
from hosts import Hosts  # noqa: E402
from nodes import Cluster  # noqa: E402

PAUSE_S = 3.0  # > the election timeout's upper bound (1.5 s, src/limits.rs)
FAULTS = ["kill", "pause", "partition-leader", "bridge", "one-way", "loss", "delay", "rolling-restart", "wipe", "damage-flip", "damage-truncate", "damage-remove"]
NETWORK_FAULTS = {"partition-leader", "bridge", "one-way", "loss", "delay"}
PROCESS_FAULTS = {"kill", "pause"}
# Faults that destroy a replica's data: applied only when every group has its full voters.
DESTRUCTIVE_FAULTS = {"wipe", "damage-flip", "damage-truncate", "damage-remove"}


class Nemesis:
    def __init__(self, cluster: Cluster, hosts: Hosts, rng: random.Random, log):
        self.cluster = cluster
        self.hosts = hosts
        self.rng = rng
        self.log = log
        # Misbehaviour the history checker cannot see (reported as violations).
        self.anomalies: list[str] = []

    def others(self, node: int) -> list[int]:
        return [i for i in range(1, len(self.cluster.nodes) + 1) if i != node]

    def apply(self, fault: str, duration: float) -> list[str]:
        """Apply one fault for `duration` seconds and undo it; returns what was done."""
        c, h, rng = self.cluster, self.hosts, self.rng
        leader = c.leader().index
        count = len(c.nodes)
        notes: list[str] = [f"leader=starcite-{leader}"]
        if fault == "kill":
            target = rng.choice([leader] + self.others(leader))
            c.node(target).kill()
            notes.append(f"kill -9 starcite-{target}")
            time.sleep(duration)
            c.node(target).start()
        elif fault == "pause":
            c.node(leader).pause()
            notes.append(f"SIGSTOP starcite-{leader} for {max(PAUSE_S, duration):.1f}s")
            time.sleep(max(PAUSE_S, duration))
            c.node(leader).resume()
        elif fault == "partition-leader":
            h.partition([leader], self.others(leader))
            notes.append(f"starcite-{leader} cut from {self.others(leader)}")
            time.sleep(duration)
        elif fault == "bridge":
            order = [leader] + [i for i in self.others(leader)]
            rng.shuffle(order)
            bridge = order[0]
            rest = order[1:]
            half = len(rest) // 2
            h.partition(rest[:half], rest[half:])
            notes.append(f"halves {rest[:half]} | {rest[half:]} bridged by starcite-{bridge}")
            time.sleep(duration)
        elif fault == "one-way":
            deaf = rng.random() < 0.5
            for other in self.others(leader):
                if deaf:
                    h.cut_one_way(other, leader)
                else:
                    h.cut_one_way(leader, other)
            notes.append(f"starcite-{leader} {'hears nobody' if deaf else 'is heard by nobody'} (one-way)")
            time.sleep(duration)
        elif fault == "loss":
            percent = rng.choice([10, 25, 40])
            for i in range(1, count + 1):
                h.loss(i, percent)
            notes.append(f"{percent}% packet loss between nodes")
            time.sleep(duration)
        elif fault == "delay":
            ms = rng.choice([50, 200, 600])
            targets = list(range(1, count + 1)) if rng.random() < 0.5 else [rng.choice([leader] + self.others(leader))]
            for i in targets:
                c.node(i).set_delay(ms)
            notes.append(f"{ms} ms each way on every cluster connection into {['starcite-%d' % i for i in targets]}")
            time.sleep(duration)
        elif fault == "rolling-restart":
            for node in c.nodes:
                code = node.stop()
                notes.append(f"SIGTERM {node.name} (exit {code})")
                node.start()
                missing = c.wait_ready(60)
                if missing:
                    notes.append(f"not ready after restart: {missing}")
        elif fault == "wipe":
            target = rng.choice(self.others(leader))
            c.node(target).kill()
            c.node(target).wipe()
            notes.append(f"kill -9 starcite-{target}, data dir emptied")
            time.sleep(duration)
            c.node(target).start()
        elif fault.startswith("damage-"):
            kind = fault.split("-", 1)[1]
            target = rng.choice(self.others(leader))
            node = c.node(target)
            node.kill()
            notes.append(f"kill -9 starcite-{target}; {node.damage(kind, rng)}")
            node.start()
            if kind == "flip":
                # Mid-log corruption refuses startup (docs/ARCHITECTURE.md §3): wait until
                # the recovery scan ends one way or the other (it takes seconds on a big log).
                if node.wait_exit_or_ready(90) == "exited":
                    # The operator's repair: an empty data dir (the node rejoins as a new member).
                    notes.append(f"starcite-{target} refused to start (exit {node.proc.returncode}); data dir emptied and restarted")
                    node.wipe()
                    node.start()
                else:
                    self.anomalies.append(f"starcite-{target} did not refuse a log with a flipped byte mid-segment")
                    notes.append("NOT REFUSED: the node started on a log with a flipped byte")
            else:
                time.sleep(1.0)
            # The rule under test: a damaged node must not help elect a leader lacking
            # what it acknowledged — so kill the leader right after it comes back.
            time.sleep(min(1.0, duration))
            new_leader = c.leader().index
            if new_leader != target:
                c.node(new_leader).kill()
                notes.append(f"then kill -9 the leader starcite-{new_leader}")
                time.sleep(duration)
                c.node(new_leader).start()
            else:
                time.sleep(duration)
        else:
            raise ValueError(fault)
        return notes

    def heal(self) -> None:
        self.hosts.heal()
        for node in self.cluster.nodes:
            node.set_delay(0)
            if node.paused:
                node.resume()
            if not node.running():
                node.start()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def window_stats(attempts: list[dict], start: float, end: float) -> dict:
    appends = [a for a in attempts if a["kind"] == "append" and start <= a["invoke"] < end]
    ok = [a for a in appends if a["outcome"] == "ok"]
    p99 = percentile([a["complete"] - a["invoke"] for a in ok], 0.99)
    return {"appends": len(appends), "acknowledged": len(ok), "share_acknowledged": round(len(ok) / len(appends), 3) if appends else None,
            "p99_ms": round(p99 * 1000, 1) if p99 is not None else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, type=Path)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of: " + ", ".join(FAULTS))
    ap.add_argument("--out", type=Path, required=True, help="report folder (history, node logs, report.json, report.md)")
    ap.add_argument("--net", type=int, default=77, help="second octet of the test network 10.N.0.0/24 (the next free one if taken)")
    args = ap.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or not faults:
        print(f"campaign: unknown faults {unknown}; known: {FAULTS}", file=sys.stderr)
        return 2

    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    # Another campaign on this machine keeps its test network: take the next free one.
    taken = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    net = args.net
    while f"sc{net}-1 " in taken or f"sc{net}-1\n" in taken:
        net += 1
        if net > 250:
            print("campaign: no free test network 10.N.0.0/24", file=sys.stderr)
            return 2
    hosts = Hosts(args.nodes, prefix=f"sc{net}-", net=net)
    cluster = Cluster(args.binary.resolve(), args.out, args.nodes, args.shards, hosts)
    log_lines: list[str] = []
    t0 = time.monotonic()

    def log(msg: str) -> None:
        line = f"[{time.monotonic() - t0:7.1f}s] {msg}"
        log_lines.append(line)
        print(line, flush=True)

    try:
        hosts.create()
        cluster.start_all()
        missing = cluster.wait_ready(120)
        if missing:
            log(f"not ready at start: {missing}")
            return 2
        addrs = [n.addr for n in cluster.nodes]
        sessions = [f"chaos-{args.seed}-{i}" for i in range(args.sessions)]
        create_sessions(addrs, sessions)
        recorder = Recorder()
        stop = threading.Event()
        workers = [Worker(w, args.seed, addrs, sessions, recorder, stop) for w in range(args.workers)]
        for w in workers:
            w.start()
        nemesis = Nemesis(cluster, hosts, rng, log)
        windows = []
        end = time.monotonic() + args.seconds
        while time.monotonic() + 8 < end:
            time.sleep(rng.uniform(2, 4))
            chosen = [rng.choice(faults)]
            # Sometimes a process fault and a network fault at once.
            if chosen[0] in PROCESS_FAULTS and rng.random() < 0.3 and NETWORK_FAULTS & set(faults):
                chosen.append(rng.choice(sorted(NETWORK_FAULTS & set(faults))))
            duration = rng.uniform(2, 6)
            notes: list[str] = []
            budget_wait = max(0.0, min(120.0, end - time.monotonic() - 8))
            if chosen[0] in DESTRUCTIVE_FAULTS and not cluster.wait_fully_replicated(budget_wait):
                # Keep the fault budget: never a second replica's data while a group is
                # still re-adding the first (see Cluster.wait_fully_replicated).
                log(f"{chosen[0]}: skipped, groups still under-replicated after {budget_wait:.0f} s")
                continue
            start = time.monotonic()
            if len(chosen) == 2:
                extra_notes: list[str] = []
                extra = threading.Thread(target=lambda: extra_notes.extend(nemesis.apply(chosen[1], duration)))
                extra.start()
            notes += nemesis.apply(chosen[0], duration)
            if len(chosen) == 2:
                extra.join()
                notes += extra_notes
            nemesis.heal()
            windows.append({"faults": chosen, "start": start - t0, "end": time.monotonic() - t0, "notes": notes})
            log(f"{'+'.join(chosen)}: {'; '.join(notes)}")
            not_ready = cluster.wait_ready(60)
            if not_ready:
                log(f"after healing, not ready within 60 s: {not_ready}")
        stop.set()
        for w in workers:
            w.join(60)
        log(f"healing done; {len(recorder.attempts)} attempts recorded; reading every session through every node")
        not_ready = cluster.wait_ready(90)
        if not_ready:
            log(f"not ready for the final read: {not_ready}")
        final: dict[str, dict] = {}
        for node in cluster.nodes:
            final[f"{node.name}/page"] = {s: read_history(node.addr, s) for s in sessions}
        for node in cluster.nodes:
            final[f"{node.name}/sse"] = {}
            for s in sessions:
                reference = final[f"{cluster.nodes[0].name}/page"].get(s) or []
                final[f"{node.name}/sse"][s] = tail_history(node.addr, s, num(reference[-1]["seq"]) if reference else 0)
        verdict = check(recorder.attempts, final)
        # The final reads, for diagnosing a violation (numbers keep their exact text).
        with open(args.out / "final.json", "w") as f:
            json.dump(final, f, default=lambda v: v[1] if isinstance(v, tuple) else str(v))
        for anomaly in nemesis.anomalies:
            verdict.add("N1", None, anomaly)
        verdict.stats["violations"] = len(verdict.violations)
        if nemesis.anomalies:
            verdict.stats["violations_by_rule_and_session"]["N1 None"] = len(nemesis.anomalies)
        for w in windows:
            w.update(window_stats(recorder.attempts, w["start"] + t0, w["end"] + t0))
        quiet = window_stats(recorder.attempts, t0, t0 + args.seconds)
        report = {
            "seed": args.seed, "seconds": args.seconds, "nodes": args.nodes, "shards": args.shards, "sessions": args.sessions,
            "workers": args.workers, "faults_enabled": faults, "faults_injected": sum(len(w["faults"]) for w in windows),
            "windows": windows, "overall": quiet, "stats": verdict.stats, "valid": verdict.valid,
            "violations": [v.to_json() for v in verdict.violations],
        }
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
        with open(args.out / "history.jsonl", "w") as f:
            for a in recorder.attempts:
                f.write(json.dumps({k: v for k, v in a.items() if k != "events"}, default=str) + "\n")
        write_markdown(args.out / "report.md", report, log_lines)
        log(f"verdict: {'VALID' if verdict.valid else 'INVALID'} {json.dumps(verdict.stats)}")
        for v in verdict.violations:
            log(f"  {v.rule} {v.session}: {v.message}")
        return 0 if verdict.valid else 1
    finally:
        cluster.stop_all()
        hosts.destroy()


def write_markdown(path: Path, report: dict, log_lines: list[str]) -> None:
    s = report["stats"]
    lines = [
        f"# Fault campaign, seed {report['seed']}",
        "",
        f"{report['seconds']:.0f} s, {report['nodes']} nodes, {report['shards']} shards, {report['sessions']} sessions, {report['workers']} clients.",
        f"Verdict: **{'valid' if report['valid'] else 'INVALID'}** — {s['append_ops']} appends ({s['append_attempts']} attempts), "
        f"{s['acknowledged']} acknowledged, {s['indeterminate_ops']} indeterminate ({s['indeterminate_present']} present), "
        f"{s['failed_ops']} failed definitely, {s['reads']} reads checked, {s['events']} events in the final history, violations {s['violations']}.",
        "",
        "| # | fault | from (s) | to (s) | appends | acknowledged | p99 ms | what was done |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, w in enumerate(report["windows"], 1):
        share = f"{w['share_acknowledged'] * 100:.0f}%" if w["share_acknowledged"] is not None else "-"
        lines.append(f"| {i} | {'+'.join(w['faults'])} | {w['start']:.1f} | {w['end']:.1f} | {w['appends']} | {share} | {w['p99_ms']} | {'; '.join(w['notes'])} |")
    if report["violations"]:
        counts = report["stats"].get("violations_by_rule_and_session", {})
        lines += ["", "## Violations", "", "By rule and session: " + ", ".join(f"{k} × {n}" for k, n in counts.items()), ""]
        lines += [f"- {v['rule']} {v['session']}: {v['message']}" for v in report["violations"]]
    lines += ["", "## Log", "", "```"] + log_lines + ["```", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
