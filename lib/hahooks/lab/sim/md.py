"""Simulated mdconfig (docs/reference/md.md §1; sbin/mdconfig/mdconfig.c of the 8.x/9.x era,
without the label/options columns of newer -lv). Only vnode units are simulated: the
unit's device nodes/<n>/dev/mdN is a link to the backing file (same bytes)."""
from __future__ import annotations

import os
import sys

from hahooks.lab.sim import checks
from hahooks.lab.sim.state import link_device, unlink_device
from hahooks.lab.sim.util import Usage, getopt, humanize_number

USAGE = (
    "usage: mdconfig -a -t type [-n] [-o [no]option] ... [-f file]\n"
    "                [-s size] [-S sectorsize] [-u unit]\n"
    "                [-x sectors/track] [-y heads/cyl]\n"
    "       mdconfig -d -u unit [-o [no]force]\n"
    "       mdconfig -l [-v] [-n] [-u unit]\n"
    "       mdconfig file\n"
    "\t\ttype = {malloc, preload, vnode, swap}\n"
    "\t\toption = {cluster, compress, reserve}\n"
    "\t\tsize = %d (512 byte blocks), %db (B),\n"
    "\t\t       %dk (kB), %dm (MB), %dg (GB) or\n"
    "\t\t       %dt (TB)\n")


class Fail(Exception):
    def __init__(self, msg: str, code: int = 1):
        super().__init__(msg)
        self.code = code


def main(ctx, args: list[str]) -> int:
    try:
        return _main(ctx, args)
    except Usage:
        sys.stderr.write(USAGE)
        return 1
    except Fail as exc:
        sys.stderr.write(f"mdconfig: {exc}\n")
        return exc.code


def _main(ctx, args: list[str]) -> int:
    opts, rest = getopt(args, "ab:df:lno:s:S:t:u:vx:y:", "mdconfig")
    action, cmdline, file, unit, force, verbose, nflag = None, 0, None, None, False, False, False
    for opt, val in opts:
        if opt == "a":
            if cmdline:
                raise Usage()
            action, cmdline = "attach", 1
        elif opt in ("d", "l"):
            if cmdline:
                raise Usage()
            action, cmdline = ("detach" if opt == "d" else "list"), 3
        elif opt == "n":
            nflag = True
        elif opt == "t":
            if cmdline != 1 or val not in ("malloc", "preload", "vnode", "swap"):
                raise Usage()
            if val != "vnode":
                raise Fail(f"simulated mdconfig supports only -t vnode (got {val})")
            cmdline = 2
        elif opt == "f":
            if cmdline == 0:
                action, cmdline = "attach", 1
            if cmdline == 1:
                cmdline = 2
            if cmdline != 2:
                raise Usage()
            file = _realfile(val)
        elif opt == "o":
            if action == "detach" and val in ("force", "noforce"):
                force = val == "force"
            elif cmdline != 2 and action != "detach":
                raise Usage()
            elif val.removeprefix("no") not in ("async", "cluster", "compress", "force",
                                                "readonly", "reserve"):
                raise Fail(f"Unknown option: {val}.")
        elif opt == "u":
            if cmdline not in (2, 3):
                raise Usage()
            text = val[5:] if val.startswith("/dev/") else val
            text = text[2:] if text.startswith("md") else text
            if not text.isdigit():
                raise Fail(f"bad unit: {text}")
            unit = int(text)
        elif opt == "v":
            if cmdline != 3:
                raise Usage()
            verbose = True
        elif opt in "sSxyb":
            if cmdline != 2:
                raise Usage()
    if action is None:
        if len(rest) != 1:
            raise Usage()
        action, file = "attach", _realfile(rest[0])
    if action == "attach":
        if file is None:
            raise Fail("must specify -f for -t vnode")
        return attach(ctx, file, unit, nflag)
    if action == "detach":
        if unit is None:
            raise Usage()
        return detach(ctx, unit, force)
    return show(ctx, unit, verbose, nflag)


def _realfile(path: str) -> str:
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise Fail(f"could not find full path for {path}: No such file or directory")
    if not os.path.isfile(real):
        raise Fail(f"{path} is not a regular file")
    return real


def attach(ctx, file: str, unit: int | None, nflag: bool) -> int:
    from hahooks.lab.sim import mirror_model

    with ctx.store.locked(write=True) as st:
        units = st["md"].setdefault(ctx.node, {})
        if unit is None:
            chosen = 0
            while str(chosen) in units:
                chosen += 1
        elif str(unit) in units:
            raise Fail("ioctl(/dev/mdctl): Device busy")
        else:
            chosen = unit
        units[str(chosen)] = {"file": file, "size": os.path.getsize(file)}
        link_device(file, ctx.dev(f"md{chosen}"))
        mirror_model.taste(ctx, st, f"md{chosen}")
    if unit is None:
        sys.stdout.write(f"{'' if nflag else 'md'}{chosen}\n")
    return 0


def detach(ctx, unit: int, force: bool) -> int:
    from hahooks.lab.sim import mirror_model

    with ctx.store.locked(write=True) as st:
        units = st["md"].get(ctx.node, {})
        if str(unit) not in units:
            raise Fail("ioctl(/dev/mdctl): No such file or directory")
        device = ctx.dev(f"md{unit}")
        used = mirror_model.users(st, ctx.node, f"md{unit}") + checks.usage(device, (ctx.store.root,))
        if used and not force:
            raise Fail("ioctl(/dev/mdctl): Device busy")
        if used:
            ctx.violation("device_removed_in_use",
                          f"/dev/md{unit} detached with -o force while in use: {', '.join(used)}",
                          device=device)
        mirror_model.provider_gone(ctx, st, f"md{unit}")
        del units[str(unit)]
        unlink_device(device)
    return 0


def show(ctx, unit: int | None, verbose: bool, nflag: bool) -> int:
    with ctx.store.locked() as st:
        units = st["md"].get(ctx.node, {})
    names = sorted(units, key=int)
    if unit is not None:    # md_query(): one unit, always verbose, exit -1 when absent
        if str(unit) not in units:
            return 255
        names, verbose, listing = [str(unit)], True, False
    else:
        listing = True
    out = []
    for n in names:
        out.append(n if nflag else f"md{n}")
        if verbose:
            u = units[n]
            out.append(f"\tvnode\t{humanize_number(u['size'], 6, b=True):>6}\t{u['file']}")
        out.append(" " if listing and not verbose else "\n")
    if listing and names and not verbose:
        out.append("\n")
    sys.stdout.write("".join(out))
    return 0


def node_down(store, st: dict, node: str) -> None:
    for unit in st["md"].pop(node, {}):
        unlink_device(os.path.join(store.dev_dir(node), f"md{unit}"))
