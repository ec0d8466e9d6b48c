"""Simulated FreeBSD sysctl(8) for the net.inet.carp.* subset (docs/reference/carp-devd.md §4).

Only the six oids of the reference table exist; any other oid is refused as FreeBSD
refuses an unknown one ("sysctl: unknown oid 'x'", exit 1). A write to
net.inet.carp.demotion is ADDED to the current value (carp_demote_adj), so
`sysctl net.inet.carp.demotion=240` prints `net.inet.carp.demotion: 0 -> 240`.
Values are per node, in the world state.
"""
from __future__ import annotations

import sys

from hahooks.lab.sim.util import Usage, getopt

NODE = "net.inet.carp"
DEFAULTS = {  # in ip_carp.c declaration order (sysctl walks a node in that order)
    "net.inet.carp.allow": 1,
    "net.inet.carp.preempt": 0,
    "net.inet.carp.log": 1,
    "net.inet.carp.demotion": 0,
    "net.inet.carp.ifdown_demotion_factor": 240,
    "net.inet.carp.senderr_demotion_factor": 240,
}
PARENTS = {"net", "net.inet", NODE}
USAGE = ("usage: sysctl [-bdehiNnoqTtWx] [ -B <bufsize> ] [-f filename] name[=value] ...\n"
         "       sysctl [-bdehNnoqTtWx] [ -B <bufsize> ] -a\n")


def main(ctx, args: list[str]) -> int:
    try:
        opts, names = getopt(args, "AaB:bdeFf:hiJlNnoqTtWXx", "sysctl")
    except Usage:
        sys.stderr.write(USAGE)
        return 1
    flags = {o for o, _ in opts}
    if not names and not flags & {"a", "A", "X"}:
        sys.stderr.write(USAGE)
        return 1
    warncount = 0
    with ctx.store.locked(write=True) as st:
        values = st.setdefault("sysctl", {}).setdefault(ctx.node, {})
        current = {oid: values.get(oid, default) for oid, default in DEFAULTS.items()}
        if flags & {"a", "A", "X"}:
            names = [NODE]
        for arg in names:
            warncount += one(arg, flags, current, values)
    return 1 if warncount else 0


def one(arg: str, flags: set, current: dict, values: dict) -> int:
    """parse() in sbin/sysctl/sysctl.c for one name[=value]; returns 1 on a warning."""
    name, eq, value = arg.partition("=")
    prefix = "" if "n" in flags else f"{name}: "
    if name in PARENTS:
        if eq:
            sys.stderr.write(f"sysctl: oid '{name}' isn't a leaf node\n")
            return 1
        for oid in DEFAULTS:
            if oid.startswith(name + "."):
                sys.stdout.write(f"{'' if 'n' in flags else oid + ': '}{current[oid]}\n")
        return 0
    if name not in DEFAULTS:
        if "i" not in flags:
            sys.stderr.write(f"sysctl: unknown oid '{name}'\n")
            return 1
        return 0
    if not eq:
        sys.stdout.write(f"{prefix}{current[name]}\n")
        return 0
    try:
        number = int(value, 0)
    except ValueError:
        sys.stderr.write(f"sysctl: invalid integer '{value}'\n")
        return 1
    old = current[name]
    new = old + number if name == "net.inet.carp.demotion" else number
    values[name] = current[name] = new
    if "q" not in flags:
        sys.stdout.write(f"{prefix}{old} -> {new}\n")
    return 0
