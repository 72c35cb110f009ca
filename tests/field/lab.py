"""
The field lab's network (docs/howto/field-lab.rst): real kernel networking,
no mocks. The master stays in the root namespace on ``198.18.K.1`` (and
``198.18.K.3`` for a second master), the master's side of one veth pair;
the other side is the uplink of a NAT namespace (``198.18.K.2``) that
masquerades everything its nodes send. ``K`` is the first /29 no interface
of the root namespace uses yet, so two runs at once do not collide. Each node is a namespace of its own
behind the NAT (``198.19.N.2``, its gateway ``198.19.N.1``); the root
namespace has no route to the nodes, so the master sees every node as the
NAT's address, exactly as across a customer's NAT.

Only addresses of 198.18.0.0/15, only on interfaces inside namespaces made
here plus the master's veth side. Every name starts with a per-run prefix
(``fl`` + the pid in hex); :func:`sweep` removes what runs whose process is
gone left behind, :meth:`Lab.close` removes everything of this run (deleting
a namespace removes its links, nftables tables and qdiscs with it).

Impairments, each undone by :meth:`Lab.clear`: :meth:`Lab.loss` (nftables
``numgen random mod 100 < N drop`` in the NAT's forward chain),
:meth:`Lab.slow` (``tc`` ``tbf`` on the node's link), :meth:`Lab.blackhole`
(nftables drop, no reset) and :meth:`Lab.conntrack_timeout` (the NAT
namespace's own ``nf_conntrack_tcp_timeout_established``: per network
namespace on the kernels we run on, checked at start).
"""

import os
import re
import shutil
import subprocess

from saltext_edge.minion_restart import alive

_PREFIX_RE = re.compile(r"^fl([0-9a-f]+)-")
_CT_TIMEOUT = "net.netfilter.nf_conntrack_tcp_timeout_established"

#: figures measured by the lab's fixtures, printed by the tests that use them
#: (here, not in conftest.py: pytest imports that under another name too)
FIGURES = {}


class LabUnavailable(Exception):
    """The lab cannot be built here (not root, no ``ip``/``nft``, no namespaces): one line why."""


def run(*argv, check=True, stdin=None):
    """Run a command; return its stdout. Raises ``RuntimeError`` with its stderr when it fails and ``check``."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def sweep():
    """Delete namespaces and root links of earlier lab runs whose process is gone; return their names."""
    gone = []
    names = [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]
    links = re.findall(r"^\d+: (fl[0-9a-f]+-[^:@]+)", run("ip", "-o", "link", "show"), re.M)
    for name in names + links:
        match = _PREFIX_RE.match(name)
        if not match or alive(int(match.group(1), 16)):
            continue
        if name in names:
            # what that run left running in there (its minions) goes too
            for pid in run("ip", "netns", "pids", name, check=False).split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            run("ip", "netns", "delete", name, check=False)
        else:
            run("ip", "link", "delete", name, check=False)
        gone.append(name)
    return gone


def check_available():
    """Raise :class:`LabUnavailable` with one line saying why the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabUnavailable("the field lab needs root (network namespaces, nftables)")
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            raise LabUnavailable(
                f"the field lab needs '{tool}' (./dev installs iproute2 and nftables)"
            )


class Lab:
    """One run's network: the NAT namespace, the master's veth side, nodes added by :meth:`node`."""

    def __init__(self, prefix=None):
        self.prefix = prefix or f"fl{os.getpid():x}-"
        self.nat = self.prefix + "nat"
        self.master_if = self.prefix + "m"
        self.nodes = {}
        self._handles = {}
        self.master_a = self.master_b = self.nat_uplink = None

    @staticmethod
    def _free_subnet():
        """The first 198.18.K.0/29 (K 1-254) that no root-namespace interface uses; returns K."""
        used = set(re.findall(r"inet 198\.18\.(\d+)\.", run("ip", "-4", "-o", "addr", "show")))
        for k in range(1, 255):
            if str(k) not in used:
                return k
        raise LabUnavailable("no free 198.18.K.0/29 left in the root namespace")

    # ------------------------------------------------------------------ build
    def build(self):
        """Make the NAT namespace and the master's veth (198.18.K.1 and .3). Raises :class:`LabUnavailable`."""
        try:
            run("ip", "netns", "add", self.nat)
        except RuntimeError as exc:
            raise LabUnavailable(f"cannot make a network namespace: {exc}") from None
        self.nsexec(self.nat, "ip", "link", "set", "lo", "up")
        run(
            "ip",
            "link",
            "add",
            self.master_if,
            "type",
            "veth",
            "peer",
            "name",
            "uplink",
            "netns",
            self.nat,
        )
        k = self._free_subnet()
        self.master_a, self.nat_uplink, self.master_b = (f"198.18.{k}.{i}" for i in (1, 2, 3))
        run("ip", "addr", "add", f"{self.master_a}/29", "dev", self.master_if)
        run("ip", "addr", "add", f"{self.master_b}/29", "dev", self.master_if)
        run("ip", "link", "set", self.master_if, "up")
        run("ip", "-n", self.nat, "addr", "add", f"{self.nat_uplink}/29", "dev", "uplink")
        run("ip", "-n", self.nat, "link", "set", "uplink", "up")
        self.nsexec(self.nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.nsexec(
            self.nat,
            "nft",
            "-f",
            "-",
            stdin=(
                "table ip lab {\n"
                ' chain post { type nat hook postrouting priority 100; oifname "uplink" masquerade; }\n'
                " chain fw { type filter hook forward priority 0; policy accept; }\n"
                "}\n"
            ),
        )
        # conntrack's table exists once the NAT rule is there: its timeout
        # must be this namespace's own, or a test would change the host's
        if self.nsexec(self.nat, "sysctl", "-n", _CT_TIMEOUT, check=False).strip() == "":
            raise LabUnavailable(f"{_CT_TIMEOUT} is not available in a network namespace here")
        return self

    def nsexec(self, ns, *argv, check=True, stdin=None):
        return run("ip", "netns", "exec", ns, *argv, check=check, stdin=stdin)

    def node(self, index):
        """Make node namespace ``index`` (1-250) behind the NAT; return its namespace name."""
        ns = f"{self.prefix}n{index}"
        link = f"n{index}"
        run("ip", "netns", "add", ns)
        run(
            "ip",
            "link",
            "add",
            link,
            "netns",
            self.nat,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        run("ip", "-n", self.nat, "addr", "add", f"198.19.{index}.1/30", "dev", link)
        run("ip", "-n", self.nat, "link", "set", link, "up")
        run("ip", "-n", ns, "addr", "add", f"198.19.{index}.2/30", "dev", "eth0")
        for dev in ("lo", "eth0"):
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "route", "add", "default", "via", f"198.19.{index}.1")
        self.nodes[ns] = {"index": index, "link": link, "address": f"198.19.{index}.2"}
        return ns

    def close(self):
        """Remove every namespace and link of this run (safe to call twice)."""
        for ns in list(self.nodes) + [self.nat]:
            run("ip", "netns", "delete", ns, check=False)
        run("ip", "link", "delete", self.master_if, check=False)
        self.nodes.clear()

    # ------------------------------------------------------------ impairments
    def _rule(self, key, rule):
        """Add ``rule`` to the NAT's forward chain under ``key``; remember its handle."""
        out = self.nsexec(
            self.nat, "nft", "--echo", "--handle", "add", "rule", "ip", "lab", "fw", *rule.split()
        )
        self._handles.setdefault(key, []).append(re.search(r"# handle (\d+)", out).group(1))

    def _node_addr(self, ns):
        return self.nodes[ns]["address"]

    def loss(self, ns, percent):
        """Drop ``percent`` % of the packets from and to node ``ns`` at random (both directions)."""
        addr = self._node_addr(ns)
        for field in ("saddr", "daddr"):
            self._rule(ns, f"ip {field} {addr} numgen random mod 100 < {int(percent)} drop")

    def slow(self, ns, rate="256kbit", burst="4kb", latency="400ms"):
        """Shape node ``ns``'s link to ``rate`` with a token bucket (``tc tbf``), both directions."""
        args = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        run("tc", "-n", self.nat, "qdisc", "replace", "dev", self.nodes[ns]["link"], *args)
        run("tc", "-n", ns, "qdisc", "replace", "dev", "eth0", *args)

    def blackhole(self, ns, to=None):
        """Drop (no reset) every packet of node ``ns``, or only those between it and address ``to``."""
        addr = self._node_addr(ns)
        if to is None:
            self._rule(ns, f"ip saddr {addr} drop")
            self._rule(ns, f"ip daddr {addr} drop")
        else:
            # the forward chain sees the node's own address both ways (the
            # way out before masquerade, the answers after conntrack undid it)
            self._rule(ns, f"ip saddr {addr} ip daddr {to} drop")
            self._rule(ns, f"ip saddr {to} ip daddr {addr} drop")

    def clear(self, ns):
        """Remove the nftables rules and qdiscs set for node ``ns`` (restore its link)."""
        for handle in self._handles.pop(ns, []):
            self.nsexec(self.nat, "nft", "delete", "rule", "ip", "lab", "fw", "handle", handle)
        run(
            "tc", "-n", self.nat, "qdisc", "del", "dev", self.nodes[ns]["link"], "root", check=False
        )
        run("tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root", check=False)

    def conntrack_timeout(self, seconds=None):
        """Set the NAT's established-TCP conntrack timeout (``None``: read it); return the value in force."""
        if seconds is not None:
            self.nsexec(self.nat, "sysctl", "-qw", f"{_CT_TIMEOUT}={int(seconds)}")
        return int(self.nsexec(self.nat, "sysctl", "-n", _CT_TIMEOUT).strip())
