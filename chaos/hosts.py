"""Test hosts: one network namespace per node, joined by a bridge, and the network faults.

Layout (all inside this machine; nothing is routed off it):
  bridge `<prefix>br` in the root namespace, address 10.<net>.0.1/24 — the clients' side;
  namespace `<prefix>N` per node, interface eth0 = 10.<net>.0.(10+N)/24, with a veth peer
  `<prefix>vN` enslaved to the bridge.

Faults are nftables rules in a table `inet chaos` inside each node's namespace, so cutting
a link never touches the root namespace's rules:
  - cut(a, b): a drops every packet from b and to b (both ways, from one side is enough);
  - cut_one_way(src, dst): dst drops what src sends it (src still hears dst);
  - loss(node, percent): node drops that share of the packets it receives from peers
    (`numgen random`, checked to work in namespaces on this kernel);
  - heal(): flush every node's chaos table.
Client traffic (from the bridge address) is never cut: Jepsen's model — clients reach
every node; the nodes lose each other.

`tc netem` does not exist in this kernel (issue #10), so delay is not a netns rule here:
see campaign.py's `pause` faults (SIGSTOP shorter than the election timeout) for slowness.
"""

from __future__ import annotations

import subprocess


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, input=input)


class Hosts:
    def __init__(self, count: int, prefix: str = "sc", net: int = 77):
        self.count = count
        self.prefix = prefix
        self.net = net
        self.bridge = f"{prefix}br"

    def ns(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def addr(self, i: int) -> str:
        return f"10.{self.net}.0.{10 + i}"

    @property
    def client_addr(self) -> str:
        return f"10.{self.net}.0.1"

    def create(self) -> None:
        self.destroy()
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.client_addr}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        # Docker's FORWARD policy (DROP) also sees bridged frames when br_netfilter is loaded.
        sh("iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT", check=False)
        for i in range(1, self.count + 1):
            ns, veth = self.ns(i), f"{self.prefix}v{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.nft(i, "add table inet chaos\nadd chain inet chaos input { type filter hook input priority 0; }\n"
                        "add chain inet chaos output { type filter hook output priority 0; }\n")

    def destroy(self) -> None:
        for i in range(1, self.count + 1):
            sh("ip", "netns", "del", self.ns(i), check=False)
            sh("ip", "link", "del", f"{self.prefix}v{i}", check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        while sh("iptables", "-D", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT", check=False).returncode == 0:
            pass

    def nft(self, i: int, script: str) -> None:
        sh("ip", "netns", "exec", self.ns(i), "nft", "-f", "-", input=script)

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    # -- faults ---------------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self.nft(a, f"add rule inet chaos input ip saddr {self.addr(b)} drop\nadd rule inet chaos output ip daddr {self.addr(b)} drop\n")

    def cut_one_way(self, src: int, dst: int) -> None:
        self.nft(dst, f"add rule inet chaos input ip saddr {self.addr(src)} drop\n")

    def partition(self, *groups: list[int]) -> None:
        """Cut every link between nodes of different groups (nodes in no group keep all links)."""
        for gi, g in enumerate(groups):
            for h in groups[gi + 1:]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def loss(self, node: int, percent: int) -> None:
        self.nft(node, f"add rule inet chaos input ip saddr 10.{self.net}.0.0/24 ip saddr != {self.client_addr} numgen random mod 100 < {percent} drop\n")

    def heal(self) -> None:
        for i in range(1, self.count + 1):
            self.nft(i, "flush chain inet chaos input\nflush chain inet chaos output\n")
