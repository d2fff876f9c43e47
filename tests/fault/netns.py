"""A network namespace joined to the host by a veth pair on a private /30.

The host end gets ``10.213.<k>.1``, the namespace end ``10.213.<k>.2``; Redis
binds to the host end only, and a worker started under ``prefix`` reaches it
through the pair alone, so cutting or degrading the pair cuts or degrades
that worker and nothing else. Needs root (CAP_NET_ADMIN); ``available()``
says why not when it cannot work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

SUBNET_BASE = "10.213"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def available() -> str | None:
    """``None`` when namespaces can be made here; otherwise why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run the fault harness as root to include scenario 4"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages iproute2, iptables)"
    probe = f"efprobe{os.getpid() % 100000}"
    res = _ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"cannot create a network namespace (no CAP_NET_ADMIN?): {res.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def free_subnet() -> int:
    """A third octet whose 10.213.<k>.0/30 no interface uses yet."""
    used = _ip("-o", "-4", "addr").stdout
    for k in range((os.getpid() % 200) + 1, 255):
        if f" {SUBNET_BASE}.{k}." not in used:
            return k
    raise RuntimeError(f"no free {SUBNET_BASE}.x.0/30 subnet")


@dataclass
class NetNS:
    """One namespace and its veth pair; ``close()`` removes both."""

    name: str
    k: int
    degraded_with: str = ""

    @property
    def host_if(self) -> str:
        return f"{self.name}h"

    @property
    def ns_if(self) -> str:
        return f"{self.name}n"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET_BASE}.{self.k}.1"

    @property
    def ns_ip(self) -> str:
        return f"{SUBNET_BASE}.{self.k}.2"

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the namespace: ``[*prefix, *argv]``."""
        return ["ip", "netns", "exec", self.name]

    def inside(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=20, check=check)

    @classmethod
    def create(cls, tag: str) -> NetNS:
        ns = cls(name=f"ef{tag}{os.getpid() % 10000}"[:12], k=free_subnet())
        try:
            _ip("netns", "add", ns.name)
            _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
            _ip("link", "set", ns.ns_if, "netns", ns.name)
            _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
            _ip("link", "set", ns.host_if, "up")
            ns.inside("ip", "addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if)
            ns.inside("ip", "link", "set", ns.ns_if, "up")
            ns.inside("ip", "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            ns.close()
            raise
        return ns

    def cut(self) -> None:
        """Drop every packet between the namespace and the host (both ways)."""
        self.inside("iptables", "-I", "OUTPUT", "-d", self.host_ip, "-j", "DROP")
        self.inside("iptables", "-I", "INPUT", "-s", self.host_ip, "-j", "DROP")

    def heal(self) -> None:
        """Undo ``cut`` and ``degrade``."""
        self.inside("iptables", "-F", "OUTPUT", check=False)
        self.inside("iptables", "-F", "INPUT", check=False)
        for dev, where in ((self.ns_if, self.prefix), (self.host_if, [])):
            subprocess.run([*where, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True, timeout=20)
        self.degraded_with = ""

    def degrade(self, delay_ms: int, loss_pct: float) -> str:
        """A slow, lossy link. ``tc netem`` where the kernel has it; otherwise
        ``tc tbf`` (a slow link: queueing delay) plus random drops by
        ``iptables -m statistic``. Returns which was used."""
        netem = ["netem", "delay", f"{delay_ms}ms", f"{delay_ms // 4}ms", "loss", f"{loss_pct}%"]
        res = subprocess.run([*self.prefix, "tc", "qdisc", "add", "dev", self.ns_if, "root", *netem],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        if res.returncode == 0:
            subprocess.run(["tc", "qdisc", "add", "dev", self.host_if, "root", *netem], check=True, timeout=20)
            self.degraded_with = f"tc netem delay {delay_ms}ms loss {loss_pct}% (both ends)"
            return self.degraded_with
        tbf = ["tbf", "rate", "64kbit", "burst", "2kb", "latency", f"{40 * delay_ms}ms"]
        self.inside("tc", "qdisc", "add", "dev", self.ns_if, "root", *tbf)
        subprocess.run(["tc", "qdisc", "add", "dev", self.host_if, "root", *tbf], check=True, timeout=20)
        p = f"{loss_pct / 100:.3f}"
        self.inside("iptables", "-I", "OUTPUT", "-d", self.host_ip, "-m", "statistic", "--mode", "random",
                    "--probability", p, "-j", "DROP")  # fmt: skip
        self.inside("iptables", "-I", "INPUT", "-s", self.host_ip, "-m", "statistic", "--mode", "random",
                    "--probability", p, "-j", "DROP")  # fmt: skip
        self.degraded_with = (f"tc tbf 64kbit + iptables statistic loss {loss_pct}% "
                              f"(this kernel has no sch_netem: {res.stderr.strip()})")  # fmt: skip
        return self.degraded_with

    def close(self) -> None:
        """Remove the pair (deleting one end deletes both) and the namespace."""
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
