"""Node processes of a test cluster, each in its own network namespace (hosts.py), and the
process and disk faults: kill -9, SIGTERM, SIGSTOP/SIGCONT, an emptied data dir, and a
damaged log (docs/FORMAT.md: segments `<data>/<core>/<seq:020>.seg`, records framed
`[len u32 LE][crc32 u32 LE][payload][pad to 8]` from offset 4096, a zero length = end).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from hosts import Hosts

HTTP_PORT = 4000
CLUSTER_PORT = 4100
# Peers reach a node through its delay proxy (delay_proxy.py) on this port; the node's
# own CLUSTER_NODES entry keeps CLUSTER_PORT, the one it binds (member names, not
# addresses, make the cluster's identity, so each node may list other addresses).
PROXY_PORT = 4200
SEGMENT_HEADER_BYTES = 4096
SECRET = "chaos-campaign-secret-key-base-0123456789abcdef0123456789"


class Node:
    def __init__(self, index: int, cluster: "Cluster"):
        self.index = index
        self.cluster = cluster
        self.name = f"starcite-{index}"
        self.dir = cluster.dir / self.name
        self.data = self.dir / "data"
        self.log = self.dir / "node.log"
        self.proc: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.delay_file = self.dir / "delay_ms"
        self.paused = False

    @property
    def addr(self) -> str:
        return self.cluster.hosts.addr(self.index)

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self.data.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.cluster.env)
        members = ",".join(
            f"{n.name}@{n.addr}:{CLUSTER_PORT if n is self else PROXY_PORT}" for n in self.cluster.nodes
        )
        env.update({"NODE_NAME": self.name, "CLUSTER_NODES": members, "STARCITE_RAFT_DATA_DIR": str(self.data), "PORT": str(HTTP_PORT)})
        if self.proxy is None or self.proxy.poll() is not None:
            proxy = Path(__file__).resolve().parent / "delay_proxy.py"
            cmd = self.cluster.hosts.exec_prefix(self.index) + [sys.executable, str(proxy), str(PROXY_PORT), str(CLUSTER_PORT), str(self.delay_file)]
            self.proxy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu = (self.index - 1) % (os.cpu_count() or 1)
        cmd = self.cluster.hosts.exec_prefix(self.index) + ["taskset", "-c", str(cpu), str(self.cluster.binary)]
        with open(self.log, "ab") as out:
            out.write(f"\n==== start {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.paused = False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait()
        self.paused = False

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait for the graceful exit (bounded), then kill -9 if it did not come."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def set_delay(self, ms: int) -> None:
        """Delay every cluster connection into this node by `ms` each way (0: none)."""
        self.delay_file.write_text(str(ms))

    def wipe(self) -> None:
        assert not self.running()
        shutil.rmtree(self.data, ignore_errors=True)

    # -- HTTP ------------------------------------------------------------------------------

    def get(self, path: str, timeout: float = 2) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.addr, HTTP_PORT, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def ready(self) -> bool:
        try:
            return self.get("/health/ready")[0] == 200
        except OSError:
            return False

    def wait_exit_or_ready(self, timeout: float) -> str:
        """After a start: "exited", "ready" or "timeout", whichever comes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return "exited"
            if self.ready():
                return "ready"
            time.sleep(0.2)
        return "timeout"

    def metric_lines(self) -> list[str] | None:
        """The node's /metrics exposition, line by line; None if unreachable."""
        try:
            status, body = self.get("/metrics")
        except OSError:
            return None
        return body.decode().splitlines() if status == 200 else None

    def leaderships(self) -> int:
        """How many shards this node leads (starcite_raft_is_leader), or -1 if unreachable."""
        lines = self.metric_lines()
        if lines is None:
            return -1
        return sum(1 for line in lines if line.startswith("starcite_raft_is_leader") and line.endswith(" 1"))

    def under_replicated(self) -> int:
        """Groups this node leads that lack a full set of current voters
        (starcite_raft_groups_under_replicated), or -1 if unreachable."""
        for line in self.metric_lines() or []:
            if line.startswith("starcite_raft_groups_under_replicated "):
                return int(float(line.split()[1]))
        return -1

    # -- disk damage (the node must be down) ---------------------------------------------------

    def segments(self) -> list[Path]:
        return sorted(self.data.glob("*/*.seg"))

    def frames(self, path: Path) -> list[tuple[int, int, int]]:
        """(offset, total length, payload length) of every record in a segment, in order."""
        out = []
        with open(path, "rb") as f:
            data = f.read()
        pos = SEGMENT_HEADER_BYTES
        while pos + 8 <= len(data):
            (length,) = struct.unpack_from("<I", data, pos)
            if length == 0:
                break
            total = (8 + length + 7) // 8 * 8
            out.append((pos, total, length))
            pos += total
        return out

    def damage(self, kind: str, rng) -> str:
        """Damage the log while the node is down; returns what was done (for the report).

        flip: one byte flipped inside a record that has records after it (mid-log: the node
          must refuse to start rather than serve altered data);
        truncate: the newest data segment cut at a record boundary, 1–64 records before its end;
        remove: the newest data segment (and the empty ones created ahead of it) deleted.
        """
        assert not self.running()
        with_data = [p for p in self.segments() if self.frames(p)]
        if not with_data:
            return "no data to damage"
        newest = with_data[-1]
        frames = self.frames(newest)
        if kind == "flip":
            if len(frames) < 2:
                return "too few records to flip mid-log"
            # Inside the length or the payload (the CRC covers both; the padding is not data).
            offset, _, length = frames[rng.randrange(0, len(frames) - 1)]
            at = offset + rng.choice([rng.randrange(0, 4), 8 + rng.randrange(0, length)])
            with open(newest, "r+b") as f:
                f.seek(at)
                byte = f.read(1)
                f.seek(at)
                f.write(bytes([byte[0] ^ 0x40]))
            return f"flipped byte {at} of {newest.name} ({len(frames)} records)"
        if kind == "truncate":
            cut = rng.randint(1, min(64, len(frames)))
            offset, _, _ = frames[len(frames) - cut]
            os.truncate(newest, offset)
            return f"truncated {newest.name} at offset {offset}: {cut} of {len(frames)} records gone"
        if kind == "remove":
            removed = [p for p in self.segments() if p >= newest]
            for p in removed:
                p.unlink()
            return f"removed {', '.join(p.name for p in removed)} ({len(frames)} records in the newest)"
        raise ValueError(kind)


class Cluster:
    def __init__(self, binary: Path, directory: Path, count: int, shards: int, hosts: Hosts):
        self.binary = binary
        self.dir = directory
        self.hosts = hosts
        self.env = {
            "SECRET_KEY_BASE": SECRET,
            "STARCITE_SHARDS": str(shards),
            "STARCITE_CORES": "1",
            # Small segments, so a campaign spans several and "remove the newest" is a real fault.
            "STARCITE_SEGMENT_BYTES": str(4 * 1024 * 1024),
        }
        self.nodes = [Node(i, self) for i in range(1, count + 1)]

    def node(self, index: int) -> Node:
        return self.nodes[index - 1]

    def start_all(self) -> None:
        for n in self.nodes:
            n.start()

    def wait_ready(self, timeout: float = 90) -> list[str]:
        """Wait until every running node is ready; returns why each other node is not."""
        deadline = time.monotonic() + timeout
        pending = [n for n in self.nodes if n.running()]
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if n.running() and not n.ready()]
            if pending:
                time.sleep(0.25)
        reasons = []
        for n in pending:
            try:
                reasons.append(f"{n.name}: {n.get('/health/ready')[1].decode()[:300]}")
            except OSError as e:
                reasons.append(f"{n.name}: {e}")
        return reasons + [f"{n.name}: not running (exit {n.proc.returncode if n.proc else None})" for n in self.nodes if not n.running()]

    def wait_fully_replicated(self, timeout: float) -> bool:
        """Wait until every node runs and no group lacks a current voter; False on timeout.

        Destructive faults (wipe, damage) wait for this: the fault model damages a minority
        of each group's replicas, and a second replica lost while the first is still being
        re-added would be a majority (docs/RELIABILITY.md, "Fault budget")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Ready first: a group without a leader has nobody to count it.
            counts = [n.under_replicated() if n.running() and not n.paused and n.ready() else -1 for n in self.nodes]
            if all(c == 0 for c in counts):
                return True
            time.sleep(0.5)
        return False

    def leader(self) -> Node:
        """The node leading the most shards (ties: the lowest index)."""
        counts = [(n.leaderships() if n.running() and not n.paused else -1, -n.index) for n in self.nodes]
        best = max(counts)
        return self.node(-best[1])

    def stop_all(self) -> None:
        for n in self.nodes:
            if n.paused:
                n.resume()
        for n in self.nodes:
            if n.running():
                n.signal(signal.SIGTERM)
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(30)
                except subprocess.TimeoutExpired:
                    n.kill()
        for n in self.nodes:
            if n.proxy is not None and n.proxy.poll() is None:
                n.proxy.kill()
                n.proxy.wait()
