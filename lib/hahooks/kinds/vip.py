"""`vip`: one IPv4 address on one interface (the address ucarp, or a plain failover, moves).

held     = the address is on the interface with the configured prefix.
released = the address is not on the interface.
broken   = the address is there with another prefix, or the interface cannot be read.

Linux: status `ip -o -4 addr show dev IFACE`, acquire `ip addr add A/P dev IFACE [label L]`,
release `ip addr del A/P dev IFACE` (iproute2 ip-address(8)). FreeBSD: status
`ifconfig IFACE inet` (a line `inet A netmask 0xffffff00 ...`), acquire
`ifconfig IFACE inet A/P alias`, release `ifconfig IFACE inet A -alias`
(sbin/ifconfig/af_inet.c in_status(), in_getaddr(); docs/reference/ucarp.md, docs/reference/lab.md).
Both directions read the addresses first, so re-runs change nothing. No gratuitous ARP is sent:
the hook never did (ucarp itself announces with its adverts, docs/reference/ucarp.md).
"""
from __future__ import annotations

import ipaddress
import logging
import re

from hahooks import schema
from hahooks.errors import HahooksError
from hahooks.kinds.base import Observation, Resource, broken, held, released
from hahooks.schema import Invalid

log = logging.getLogger("hahooks.kinds.vip")

# Linux IFNAMSIZ and FreeBSD IF_NAMESIZE are 16 including the NUL.
IFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def _address(v) -> str:
    try:
        iface = ipaddress.IPv4Interface(v)
    except (ValueError, TypeError):
        raise Invalid(f"expected an IPv4 address with an optional /prefix, got {v!r}") from None
    if iface.network.prefixlen == 0:
        raise Invalid(f"prefix /0 is not an address on a link: {v!r}")
    return str(iface) if "/" in str(v) else str(iface.ip)


def _interface(v) -> str:
    if not isinstance(v, str) or not IFACE_RE.match(v) or v in (".", ".."):
        raise Invalid(f"invalid interface name {v!r} (1-15 letters, digits, _ . -)")
    return v


class Vip(Resource):
    KIND = "vip"
    PARAMS = {
        "address": schema.Field(_address, doc='"a.b.c.d/prefix" (no prefix: /32)',
                                type_name="string"),
        "interface": schema.Field(_interface, doc="the interface that carries it",
                                  type_name="string"),
        "label": schema.Str(None, "Linux only: `ip addr add ... label LABEL` (it must start "
                                  "with the interface name); FreeBSD has no labels"),
    }

    @classmethod
    def validate(cls, spec) -> None:
        label = spec.params["label"]
        if label is not None and (not label.startswith(spec.params["interface"])
                                  or len(label) > 15):
            raise Invalid(f"label {label!r} must start with the interface name "
                          f"{spec.params['interface']!r} and be at most 15 characters")

    @property
    def ip(self) -> str:
        return self.p["address"].split("/")[0]

    @property
    def prefix(self) -> int:
        return int(self.p["address"].split("/")[1]) if "/" in self.p["address"] else 32

    @property
    def iface(self) -> str:
        return self.p["interface"]

    def present(self) -> int | None:
        """The prefix length the address has on the interface, or None if absent (raises
        when the interface cannot be read)."""
        if self.ctx.freebsd:
            out = self.ctx.run(["ifconfig", self.iface, "inet"], readonly=True).stdout
            return parse_ifconfig(out).get(self.ip)
        out = self.ctx.run(["ip", "-o", "-4", "addr", "show", "dev", self.iface],
                           readonly=True).stdout
        return parse_ip_addr(out).get(self.ip)

    def status(self) -> Observation:
        try:
            prefix = self.present()
        except HahooksError as exc:
            return broken(f"cannot read {self.iface}: {exc.one_line()}")
        if prefix is None:
            return released(f"{self.ip} not on {self.iface}")
        if prefix != self.prefix:
            return broken(f"{self.ip}/{prefix} on {self.iface}, configured /{self.prefix}")
        return held(f"{self.ip}/{prefix} on {self.iface}")

    def acquire(self) -> None:
        if self.present() is not None:
            log.info("VIP %s already on %s", self.ip, self.iface, extra={"event": "vip"})
            return
        cidr = f"{self.ip}/{self.prefix}"
        if self.ctx.freebsd:
            argv = ["ifconfig", self.iface, "inet", cidr, "alias"]
        else:
            argv = ["ip", "addr", "add", cidr, "dev", self.iface]
            if self.p["label"]:
                argv += ["label", self.p["label"]]
        self.ctx.run(argv, readonly=False, what=f"add VIP {cidr}")

    def release(self) -> None:
        prefix = self.present()
        if prefix is None:
            log.info("VIP %s not on %s", self.ip, self.iface, extra={"event": "vip"})
            return
        argv = ["ifconfig", self.iface, "inet", self.ip, "-alias"] if self.ctx.freebsd else \
            ["ip", "addr", "del", f"{self.ip}/{prefix}", "dev", self.iface]
        self.ctx.run(argv, readonly=False, what=f"remove VIP {self.ip}")

    def describe(self) -> str:
        return f"vip {self.p['address']} on {self.iface}"


def parse_ip_addr(text: str) -> dict[str, int]:
    """`ip -o -4 addr show dev X` -> {address: prefix}."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"\binet ([0-9.]+)/([0-9]{1,2})\b", text)}


def parse_ifconfig(text: str) -> dict[str, int]:
    """FreeBSD `ifconfig X inet` -> {address: prefix} (netmask 0xffffff00 -> 24)."""
    out = {}
    for m in re.finditer(r"\binet ([0-9.]+) netmask (0x[0-9a-fA-F]{8})\b", text):
        out[m.group(1)] = bin(int(m.group(2), 16)).count("1")
    return out


RESOURCE = Vip
