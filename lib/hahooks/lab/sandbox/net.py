"""The sandbox network: a bridge in its own network namespace, one veth port per node.

Why it is built this way (docs/reference/lab.md §1):
* The bridge lives in a third namespace "<prefix>-<name>", not on a direct veth pair:
  taking one end of a veth pair down puts the other end in NO-CARRIER too, so a "link down
  on a" test would fault both nodes. Here set_link(node, False) downs only the switch port.
* The bridge runs with stp 0, forward_delay 0 and mcast_snooping 0, so a port forwards at
  once and VRRP/CARP multicast reaches every node.
* Every veth is created directly inside its target namespaces (`ip link add eth0 netns N
  type veth peer name pX netns SW`): no interface name is ever taken in the host's
  namespace, so parallel labs cannot collide there, and the host's links are never touched.
* Addresses are added with `brd +` (heartbeat's bcast silently fails without one) and must
  lie in the network's private CIDR: only addresses inside our own namespaces are used.
"""
from __future__ import annotations

import ipaddress

from hahooks.lab.sandbox.nsproc import SandboxError, host


class Network:
    def __init__(self, lab, name: str, cidr: str):
        try:
            self.network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise SandboxError(f"network {cidr!r}: {exc}") from None
        if self.network.version != 4 or not self.network.is_private or \
                self.network.prefixlen < 8 or self.network.prefixlen > 30:
            raise SandboxError(f"network {cidr!r}: must be a private IPv4 network "
                               "(/8../30), e.g. 10.99.7.0/24")
        self.lab = lab
        self.name = name
        self.cidr = str(self.network)
        self.netns = f"{lab.prefix}-{name}"
        self.bridge = "br0"
        self.ports: dict[str, str] = {}          # node name -> port name in the switch ns
        self.addresses: dict[str, str] = {}      # node name -> ip
        self.up = False

    def create(self) -> "Network":
        self.lab._add_netns(self.netns)
        self.up = True
        ns = ["ip", "-n", self.netns]
        host(ns + ["link", "set", "lo", "up"])
        host(ns + ["link", "add", self.bridge, "type", "bridge"])
        host(ns + ["link", "set", self.bridge, "type", "bridge", "stp_state", "0",
                   "forward_delay", "0", "mcast_snooping", "0"])
        host(ns + ["link", "set", self.bridge, "up"])
        return self

    def check_address(self, ip: str, node_name: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise SandboxError(f"node {node_name}: bad address {ip!r}") from None
        if addr not in self.network or addr in (self.network.network_address,
                                                self.network.broadcast_address):
            raise SandboxError(f"node {node_name}: {ip} is not a host address of {self.cidr}")
        for other, used in self.addresses.items():
            if used == ip and other != node_name:
                raise SandboxError(f"node {node_name}: {ip} is already used by {other}")
        return str(addr)

    def attach(self, node_name: str, node_netns: str, ip: str) -> None:
        """Give node_netns an eth0 with ip/prefix brd + on a new port of the bridge."""
        ip = self.check_address(ip, node_name)
        port = "p" + node_name                   # node names are <= 12 chars: fits IFNAMSIZ
        if node_name in self.ports:
            self.detach(node_name)               # a node booted again under the same name
        host(["ip", "link", "add", "eth0", "netns", node_netns, "type", "veth",
              "peer", "name", port, "netns", self.netns])
        self.ports[node_name] = port
        self.addresses[node_name] = ip
        host(["ip", "-n", self.netns, "link", "set", port, "master", self.bridge, "up"])
        inner = ["ip", "-n", node_netns]
        host(inner + ["link", "set", "lo", "up"])
        host(inner + ["addr", "add", f"{ip}/{self.network.prefixlen}", "brd", "+",
                      "dev", "eth0"])
        host(inner + ["link", "set", "eth0", "up"])

    def detach(self, node_name: str) -> None:
        """Forget a node's port (its veth vanishes with the node's namespace)."""
        port = self.ports.pop(node_name, None)
        self.addresses.pop(node_name, None)
        if port and self.up:
            host(["ip", "-n", self.netns, "link", "del", port], check=False)

    def set_link(self, node_name: str, up: bool) -> None:
        """Pull (or plug back) the node's cable: the switch port goes down, so only that
        node's eth0 loses carrier."""
        port = self.ports.get(node_name)
        if port is None:
            raise SandboxError(f"network {self.name}: no node {node_name!r} attached")
        host(["ip", "-n", self.netns, "link", "set", port, "up" if up else "down"])

    def destroy(self) -> None:
        if self.up:
            self.up = False
            self.lab._del_netns(self.netns)
