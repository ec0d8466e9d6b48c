"""Simulated gmirror (docs/reference/gmirror.md §1; sbin/geom/core/geom.c std_status,
lib/geom/mirror/geom_mirror.c, sys/geom/mirror/g_mirror_ctl.c). The model (metadata,
tasting, data links) is in mirror_model.py.
"""
from __future__ import annotations

import os
import sys
import time

from hahooks.lab.sim import checks
from hahooks.lab.sim.mirror_model import (CtlError, active, advance, comp, detach_component,
                                      device, drop, find, flush, mediasize, mirror_state,
                                      mirrors, new_meta, relink, starting, taste, update_meta,
                                      users)
from hahooks.lab.sim.providers import image_of, size_of, strip_dev
from hahooks.lab.sim.util import Usage, getopt

BALANCES = ("load", "prefer", "round-robin", "split")
VERBS = {  # verb -> (optstring, usage)
    "activate": ("v", "[-v] name prov ..."),
    "clear": ("v", "[-v] prov ..."),
    "deactivate": ("v", "[-v] name prov ..."),
    "destroy": ("fv", "[-fv] name ..."),
    "forget": ("v", "name ..."),
    "insert": ("hip:v", "[-hiv] [-p priority] name prov ..."),
    "label": ("Fhnb:s:v", "[-Fhnv] [-b balance] [-s slice] name prov ..."),
    "rebuild": ("v", "[-v] name prov ..."),
    "remove": ("v", "[-v] name prov ..."),
    "status": ("ags", "[-ags] [name ...]"),
    "stop": ("fv", "[-fv] name ..."),
}


def usage() -> int:
    lines = [f"gmirror {verb} {text}" for verb, (_, text) in sorted(VERBS.items())]
    sys.stderr.write("usage: " + "\n       ".join(lines) + "\n")
    return 1


def main(ctx, args: list[str]) -> int:
    if not args or args[0] not in VERBS:
        if args:
            sys.stderr.write(f"gmirror: Unknown command: {args[0]}.\n")
        return usage()
    verb = args[0]
    try:
        opts, rest = getopt(args[1:], VERBS[verb][0], "gmirror")
    except Usage:
        return usage()
    flags = {o: v for o, v in opts}
    try:
        with ctx.store.locked(write=True) as st:
            if verb == "status":
                return status(ctx, st, rest, flags)
            st.setdefault("gmirror_meta", {})
            advance(ctx.store, st, ctx.node)
            globals()[f"do_{verb}"](ctx, st, flags, rest)
    except CtlError as exc:
        sys.stderr.write(f"gmirror: {exc}\n")
        return 1
    return 0


# -- verbs ---------------------------------------------------------------------------------
def do_label(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if len(args) < 2:
        raise CtlError("Too few arguments.")
    balance = flags.get("b", "load")
    if balance not in BALANCES:
        raise CtlError("Invalid balance algorithm.")
    name, provs = args[0], args[1:]
    images = []
    for prov in provs:
        image = image_of(st, ctx.store, ctx.node, prov)
        if image is None:
            raise CtlError(f"Can't get informations about {prov}: No such file or directory.")
        images.append(image)
    for prov in provs:   # g_metadata_clear() opens for writing: fails on an open provider
        if users(st, ctx.node, prov) or checks.usage(os.path.join(
                ctx.store.dev_dir(ctx.node), strip_dev(prov)), (ctx.store.root,)):
            raise CtlError(f"Can't store metadata on {prov}: Operation not permitted.")
    mid = int.from_bytes(os.urandom(4), "big")
    for i, (prov, image) in enumerate(zip(provs, images)):
        new_meta(st, image, name, priority=i, autosync="n" not in flags, balance=balance,
                 ndisks=len(provs), mid=mid)
        if "v" in flags:
            sys.stdout.write(f"Metadata value stored on {prov}.\n")
    for prov in provs:
        taste(ctx, st, prov)


def do_insert(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if len(args) < 2:
        raise CtlError("Too few arguments.")
    m = find(st, ctx.node, args[0])
    name = args[0].removeprefix("mirror/")
    if len(m["components"]) < m["ndisks"]:
        raise CtlError("Not all disks connected.")
    for prov in map(strip_dev, args[1:]):
        if comp(m, prov):
            raise CtlError(f"Provider {prov} already inserted.")
        image = image_of(st, ctx.store, ctx.node, prov)
        if image is None:
            raise CtlError(f"Unknown provider {prov}.")
        if size_of(image) - 512 < mediasize(m):
            raise CtlError(f"Provider {prov} too small.")
        if users(st, ctx.node, prov) or checks.usage(os.path.join(
                ctx.store.dev_dir(ctx.node), prov), (ctx.store.root,)):
            raise CtlError(f"Cannot access provider {prov}.")
        m["ndisks"] += 1
        new_meta(st, image, name, priority=int(flags.get("p", 0)), inactive="i" in flags,
                 autosync=m["autosync"], balance=m["balance"], ndisks=m["ndisks"],
                 mid=m["mid"])
        if "i" not in flags:
            c = {"prov": prov, "image": image, "priority": int(flags.get("p", 0)),
                 "state": "SYNCHRONIZING" if m["autosync"] else "STALE",
                 "sync_start": time.time()}
            m["components"].append(c)
    update_meta(st, m)


def do_rebuild(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if len(args) < 2:
        raise CtlError("Too few arguments.")
    m = find(st, ctx.node, args[0])
    for prov in args[1:]:
        c = comp(m, prov)
        if c is None:
            raise CtlError(f"No such provider: {prov}.")
        if c["state"] == "ACTIVE" and len(active(m)) == 1:
            raise CtlError(f"Provider {prov} is the last active provider in "
                           f"{args[0].removeprefix('mirror/')}.")
        if c["state"] == "ACTIVE":
            flush(m)
            if m.get("linked") == c["image"]:
                m["linked"] = None
        c["state"], c["sync_start"] = "SYNCHRONIZING", time.time()
        relink(ctx.store, st, ctx.node, args[0].removeprefix("mirror/"), m)


def do_deactivate(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if len(args) < 2:
        raise CtlError("Too few arguments.")
    name = args[0].removeprefix("mirror/")
    m = find(st, ctx.node, name)
    for prov in args[1:]:
        c = comp(m, prov)
        if c is None:
            raise CtlError(f"No such provider: {prov}.")
        st["gmirror_meta"].setdefault(c["image"], {"name": name})["inactive"] = True
        detach_component(ctx.store, st, ctx.node, name, c, f"deactivate {prov}")
        if name not in mirrors(st, ctx.node):
            break


def do_activate(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if len(args) < 2:
        raise CtlError("Too few arguments.")
    failed = False
    for prov in args[1:]:
        image = image_of(st, ctx.store, ctx.node, prov)
        meta = st["gmirror_meta"].get(image) if image else None
        if meta is None:
            why = "Invalid argument" if image else "No such file or directory"
            sys.stderr.write(f"Cannot read metadata from {prov}: {why}.\n")
            failed = True
            continue
        if meta["name"] != args[0]:
            sys.stderr.write(f"Provider {prov} is not the mirror {args[0]} component.\n")
            failed = True
            continue
        meta["inactive"] = False
        if "v" in flags:
            sys.stdout.write(f"Provider {prov} activated.\n")
        taste(ctx, st, prov)
    if failed:
        raise CtlError("Not fully done.")


def do_remove(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if len(args) < 2:
        raise CtlError("Too few arguments.")
    name = args[0].removeprefix("mirror/")
    m = find(st, ctx.node, name)
    if len(m["components"]) < m["ndisks"]:
        raise CtlError("Not all disks connected.")
    for prov in args[1:]:
        c = comp(m, prov)
        if c is None:
            raise CtlError(f"No such provider: {prov}.")
        m["ndisks"] -= 1
        st["gmirror_meta"].pop(c["image"], None)
        detach_component(ctx.store, st, ctx.node, name, c, f"remove {prov}")
        if name not in mirrors(st, ctx.node):
            break
        update_meta(st, m)


def do_forget(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if not args:
        raise CtlError("Missing device(s).")
    for name in args:
        m = find(st, ctx.node, name)
        m["ndisks"] = len(m["components"])
        update_meta(st, m)


def do_stop(ctx, st: dict, flags: dict, args: list[str], clear: bool = False) -> None:
    if not args:
        raise CtlError("Missing device(s).")
    for name in args:
        short = name.removeprefix("mirror/")
        m = find(st, ctx.node, short)
        dev = device(ctx.store, ctx.node, short)
        if "f" not in flags and os.path.lexists(dev) and checks.usage(dev, (ctx.store.root,)):
            raise CtlError(f"Cannot destroy device {short} (error=16).")
        if clear:
            for c in m["components"]:
                st["gmirror_meta"].pop(c["image"], None)
        drop(ctx.store, st, ctx.node, short, "stop -f" if "f" in flags else "stop")


def do_destroy(ctx, st: dict, flags: dict, args: list[str]) -> None:
    do_stop(ctx, st, flags, args, clear=True)


def do_clear(ctx, st: dict, flags: dict, args: list[str]) -> None:
    if not args:
        raise CtlError("Too few arguments.")
    failed = False
    for prov in args:
        image = image_of(st, ctx.store, ctx.node, prov)
        if image is None or users(st, ctx.node, prov):
            why = "No such file or directory" if image is None else "Operation not permitted"
            sys.stderr.write(f"Can't clear metadata on {prov}: {why}.\n")
            failed = True
            continue
        st["gmirror_meta"].pop(image, None)
        if "v" in flags:
            sys.stdout.write(f"Metadata cleared on {prov}.\n")
    if failed:
        raise CtlError("Not fully done.")


def status(ctx, st: dict, names: list[str], flags: dict) -> int:
    """sbin/geom/core/geom.c std_status() (docs/reference/gmirror.md): "%*s  %*s  %s" with
    the Name/Status widths from the longest value, at least 4 and 6 except with -s (script:
    0, and name and status on every line). A named geom is looked up by find_geom(), which
    strips only "/dev/"; an unknown one is errx(1) "No such geom: NAME." before any output.
    Without -g a line per provider (status_one_geom_prs(): "mirror/NAME"), so a STARTING
    mirror (no provider yet) prints nothing; without names such geoms are skipped unless -a.
    -g names the geom itself (status_one_geom())."""
    advance(ctx.store, st, ctx.node)
    node_mirrors = mirrors(st, ctx.node)
    script, geoms = "s" in flags, "g" in flags
    for n in names:
        if n.removeprefix("/dev/") not in node_mirrors:
            raise CtlError(f"No such geom: {n}.")
    chosen = [n.removeprefix("/dev/") for n in names] or \
        [n for n, m in node_mirrors.items() if "a" in flags or not starting(m)]
    if not chosen:
        return 0
    old = st["settings"].get("gmirror_old_format", [])
    old = old is True or ctx.node in old
    rate = st["settings"].get("gmirror_sync_rate", 1 << 30)
    rows = []
    for name in chosen:
        m = node_mirrors[name]
        if geoms or not starting(m):
            parts = [_component(m, c, rate, old) for c in m["components"]]
            rows.append((name if geoms else f"mirror/{name}", mirror_state(m), parts or ["N/A"]))
    nlen = max([0 if script else 4] + [len(r[0]) for r in rows])
    slen = max([0 if script else 6] + [len(r[1]) for r in rows])
    out = [] if script else [f"{'Name':>{nlen}}  {'Status':>{slen}}  Components\n"]
    for name, state, parts in rows:
        for i, part in enumerate(parts):
            shown = (name, state) if i == 0 or script else ("", "")
            out.append(f"{shown[0]:>{nlen}}  {shown[1]:>{slen}}  {part}\n")
    sys.stdout.write("".join(out))
    return 0


def _component(m: dict, c: dict, rate: float, old: bool) -> str:
    """geom.c status_one_consumer(): "prov (STATE)" or "prov (STATE, NN%)" from g_mirror.c
    dumpconf's <State> and <Synchronized>; disks are NONE until a STARTING mirror launches.
    FreeBSD <= 8 printed only <Synchronized>: "prov" or "prov (NN%)"."""
    state = "NONE" if starting(m) else c["state"]
    synced = None
    if state == "SYNCHRONIZING":
        offset = int((time.time() - c["sync_start"]) * rate)
        synced = f"{min(99, offset * 100 // mediasize(m))}%"
    if old:
        return f"{c['prov']} ({synced})" if synced else c["prov"]
    return f"{c['prov']} ({state}, {synced})" if synced else f"{c['prov']} ({state})"
