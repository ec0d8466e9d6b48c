"""ucarp: `hahooks ucarp-up|ucarp-down [--vip] IFACE VIP [XPARAM]`.

ucarp runs `--upscript`/`--downscript` as `execl(script, script, interface, vip, xparam)`
and waits for it, ignoring the exit status (docs/reference/ucarp.md §1, docs/reference/lab.md §3). It sends no
adverts meanwhile, so the hook records the desire and returns (--detach, the default). The
downscript also runs at start-up (unless `--neutral`) and, with `--shutdown`, at exit: a
slave request on a node that holds nothing is a no-op.

ucarp never adds or removes the VIP itself. With --vip the hook does it, before recording
the desire, through the `vip` kind (kinds/vip.py) and the runner: Linux
`ip addr add VIP/PREFIX dev IFACE` / `ip addr del`, FreeBSD `ifconfig IFACE inet VIP/PREFIX alias` / `ifconfig IFACE inet VIP -alias`. Both are
idempotent (the current addresses are read first); the prefix is --prefix, else that of
`[wiring] vip`, else 32. With `[wiring] interface`/`vip` set, calls for another interface or
address are logged and ignored (exit 0). XPARAM is only recorded in the log.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import sys

from hahooks.config import ResourceSpec
from hahooks.errors import ConfigError, HahooksError
from hahooks.kinds.base import Context
from hahooks.kinds.vip import IFACE_RE, Vip
from hahooks.wiring import hook

log = logging.getLogger("hahooks.wiring.ucarp")

ROLE_OF_SCRIPT = {"up": "master", "down": "slave"}


def interface(value: str) -> str:
    if not IFACE_RE.match(value) or value in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"invalid interface name {value!r} (1-15 letters, digits, _ . -)")
    return value


def vip(value: str) -> str:
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid VIP {value!r} (a dotted IPv4 address: ucarp is IPv4 only)") from None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or \
            addr == ipaddress.IPv4Address("255.255.255.255"):
        raise argparse.ArgumentTypeError(f"invalid VIP {value!r} (unspecified, loopback, "
                                         "multicast or broadcast address)")
    return str(addr)


def xparam(value: str) -> str:
    if len(value) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise argparse.ArgumentTypeError("invalid xparam (control characters or longer than "
                                         "256 characters)")
    return value


def register(sub, common) -> None:
    for script, role in ROLE_OF_SCRIPT.items():
        p = sub.add_parser(
            f"ucarp-{script}", parents=[common],
            help=f"ucarp --{script}script: record {role}"
            + (" (after adding the VIP with --vip)" if script == "up"
               else " (after removing the VIP with --vip)"),
            description=f"Called by ucarp as `--{script}script` with IFACE VIP [XPARAM]. "
            f"Records {role}; with --vip it first "
            + ("adds the VIP to IFACE." if script == "up" else "removes the VIP from IFACE."))
        hook.add_mode(p, detach_default=True)
        p.add_argument("--vip", dest="manage_vip", action="store_true",
                       help="also add (up) / remove (down) the VIP: ucarp does not")
        p.add_argument("--prefix", type=_prefix, default=None,
                       help="prefix length used when adding the VIP (default: the prefix of "
                       "[wiring] vip, else 32)")
        p.add_argument("iface", metavar="IFACE", type=interface)
        p.add_argument("vip", metavar="VIP", type=vip)
        p.add_argument("xparam", metavar="XPARAM", type=xparam, nargs="?",
                       help="ucarp's --xparam (recorded only)")
        p.set_defaults(func=run_script, script=script)


def _prefix(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,2}", value) or not 1 <= int(value) <= 32:
        raise argparse.ArgumentTypeError(f"invalid prefix length {value!r} (1..32)")
    return int(value)


def run_script(args) -> int:
    argv = [args.iface, args.vip] + ([] if args.xparam is None else [args.xparam])
    role = ROLE_OF_SCRIPT[args.script]
    cfg = hook.load(args)
    mismatch = wiring_mismatch(cfg.wiring, args.iface, args.vip)
    if mismatch:
        hook.log_call(f"ucarp-{args.script}", argv, f"ignored: {mismatch}")
        return 0
    prefix = args.prefix or wiring_prefix(cfg.wiring) or 32
    vip_failed = None
    if args.manage_vip:
        # local: the runner loads only when ucarp's hook manages the address, not whenever
        # the CLI builds its whole parser (which imports every wiring)
        from hahooks import runner as runner_mod

        address = vip_resource(cfg, runner_mod.for_config(cfg), args.iface, args.vip, prefix)
        try:
            if role == "master":
                address.acquire()
            else:
                address.release()
        except HahooksError as exc:
            # The desire is recorded anyway: ucarp has decided, and the stack must follow
            # it (or leave) even if the address could not be changed.
            vip_failed = exc.one_line()
            log.error("VIP %s on %s: %s", args.vip, args.iface, vip_failed,
                      extra={"event": "vip", "ok": False})
    code = hook.request(cfg, args, role, caller=f"ucarp-{args.script}", argv=argv)
    if vip_failed:
        print(f"hahooks: error: VIP step failed: {vip_failed}", file=sys.stderr)
        return code or 1
    return code


def wiring_mismatch(wiring: dict, iface: str, address: str) -> str:
    """Why a call is not for this config's [wiring] interface/vip ("" if it is): one ucarp
    per VIP may share the scripts."""
    if wiring.get("interface") and wiring["interface"] != iface:
        return f"interface {iface} is not [wiring] interface {wiring['interface']}"
    if wiring.get("vip"):
        configured = str(_wiring_vip(wiring).ip)
        if configured != address:
            return f"VIP {address} is not [wiring] vip {configured}"
    return ""


def wiring_prefix(wiring: dict) -> int | None:
    if wiring.get("vip") and "/" in wiring["vip"]:
        return _wiring_vip(wiring).network.prefixlen
    return None


def _wiring_vip(wiring: dict):
    try:
        return ipaddress.IPv4Interface(wiring["vip"])
    except ValueError:
        raise ConfigError(f"[wiring] vip {wiring['vip']!r} is not an IPv4 address with an "
                          "optional /prefix") from None


def vip_resource(cfg, runner, iface: str, address: str, prefix: int):
    """The ucarp VIP as a `vip` kind layer (kinds/vip.py): the wiring decides, the kind acts."""
    spec = ResourceSpec(name="ucarp-vip", kind=Vip.KIND, timeout=cfg.node.command_timeout,
                        params={"address": f"{address}/{prefix}", "interface": iface,
                                "label": None})
    return Vip(spec, Context(runner=runner, node=cfg.node, config=cfg))
