"""Simulated drbdadm/drbdsetup: DRBD 8.4 kernel (Debian's in-tree module, the seeds' DRBD 8)
driven by drbd-utils 9 (docs/reference/drbd.md §2; LINBIT/drbd-utils user/v84/drbdsetup.c
print_config_error(), role_scmd(), status_cmd(), user/shared/shared_main.c m__system()).

drbdadm runs "drbdsetup-84 <cmd> <minor|res>"; a failing drbdsetup prints
"<obj>: State change failed: (<rv>) <text>" and drbdadm adds
"Command 'drbdsetup-84 ...' terminated with exit code N" (N >= 10). Exit codes: 17 for
SS_NO_UP_TO_DATE_DISK, 11 for other state changes, 10 for failures such as an
unallocated minor.

Data: one shared image per resource (protocol C: both disks hold the same bytes).
/dev/drbdN exists only while this node is Primary (a Secondary refuses opens in DRBD).
"""
from __future__ import annotations

import os
import sys
import time

from hahooks.sim import checks
from hahooks.sim.state import connected, link_device, unlink_device

SETUP = "drbdsetup-84"
STATE_ERRORS = {-1: "Multiple primaries not allowed by config",
                -2: "Need access to UpToDate data",
                -6: "Refusing to be Outdated while Connected",
                -12: "Device is held open by someone"}


class Failed(Exception):
    def __init__(self, lines: list[str], code: int):
        super().__init__(lines)
        self.lines, self.code = lines, code


def state_failed(obj, rv: int) -> Failed:
    return Failed([f"{obj}: State change failed: ({rv}) {STATE_ERRORS[rv]}"],
                  17 if rv == -2 else 11)


def not_allocated(obj) -> Failed:
    return Failed([f"{obj}: Failure: (127) Device minor not allocated",
                   "additional info from kernel:", "unknown minor"], 10)


# -- derived state -------------------------------------------------------------------------
def peer_of(r: dict, node: str) -> str:
    return next((n for n in r["nodes"] if n != node), "")


def linked(st: dict, r: dict, node: str) -> bool:
    peer = peer_of(r, node)
    return bool(r["up"].get(node) and r["up"].get(peer) and connected(st, node, peer)
                and not r["standalone"].get(node) and not r["standalone"].get(peer))


def refresh(st: dict, r: dict, name: str, store=None) -> None:
    """Advance the resource: note who wrote while alone, resolve reconnects (resync or
    split brain), finish resyncs whose time is up."""
    now = time.time()
    a, b = r["nodes"]
    for n in (a, b):
        if r["role"].get(n) == "Primary" and not linked(st, r, n):
            r["ahead"][n] = True
    if linked(st, r, a):
        if r["ahead"].get(a) and r["ahead"].get(b):
            for n in (a, b):
                r["standalone"][n] = True
            if store is not None:
                store.violation("drbd_split_brain",
                                f"DRBD {name}: both nodes wrote as Primary while "
                                "disconnected; reconnect finds split brain (both StandAlone)",
                                node=None, resource=name)
        elif r["ahead"].get(a) or r["ahead"].get(b):
            source = a if r["ahead"].get(a) else b
            target = peer_of(r, source)
            r["disk"][target] = "Inconsistent"
            r["sync"] = {"source": source, "target": target, "start": now}
            r["ahead"] = {}
    sync = r.get("sync")
    if sync and (now - sync["start"]) * st["settings"]["drbd_sync_rate"] >= r["size"]:
        r["disk"][sync["target"]] = "UpToDate"
        r["sync"] = None


def refresh_all(st: dict, store=None) -> None:
    for name, r in st["drbd"].items():
        refresh(st, r, name, store)


def cstate(st: dict, r: dict, node: str) -> str:
    if r["standalone"].get(node):
        return "StandAlone"
    if not linked(st, r, node):
        return "WFConnection"
    sync = r.get("sync")
    if sync:
        return "SyncSource" if sync["source"] == node else "SyncTarget"
    return "Connected"


def peer_role(st: dict, r: dict, node: str) -> str:
    return r["role"][peer_of(r, node)] if linked(st, r, node) else "Unknown"


def peer_disk(st: dict, r: dict, node: str) -> str:
    return r["disk"][peer_of(r, node)] if linked(st, r, node) else "DUnknown"


# -- commands ------------------------------------------------------------------------------
def primary(ctx, st: dict, r: dict, name: str, force: bool) -> None:
    obj = r["minor"]
    if not r["up"].get(ctx.node):
        raise not_allocated(obj)
    if r["role"][ctx.node] == "Primary":
        return
    if linked(st, r, ctx.node) and peer_role(st, r, ctx.node) == "Primary":
        raise state_failed(obj, -1)
    if force and r["disk"][ctx.node] != "Diskless":
        r["disk"][ctx.node] = "UpToDate"
    if r["disk"][ctx.node] != "UpToDate" and peer_disk(st, r, ctx.node) != "UpToDate":
        raise state_failed(obj, -2)
    peer = peer_of(r, ctx.node)
    if r["role"].get(peer) == "Primary" and r["up"].get(peer):
        ctx.violation("two_drbd_primaries",
                      f"DRBD {name}: {ctx.node} promoted while {peer} is Primary "
                      "(disconnected: split brain)", resource=name)
    r["role"][ctx.node] = "Primary"
    if not linked(st, r, ctx.node):
        r["ahead"][ctx.node] = True        # writes from now on exist only here
    link_device(ctx.store.path(r["image"]), ctx.dev(f"drbd{obj}"))


def secondary(ctx, st: dict, r: dict, name: str, down: bool = False) -> None:
    obj = r["minor"]
    if not r["up"].get(ctx.node):
        if down:
            return
        raise not_allocated(obj)
    device = ctx.dev(f"drbd{obj}")
    if r["role"][ctx.node] == "Primary" and checks.usage(device, (ctx.store.root,)):
        raise state_failed(name if down else obj, -12)
    r["role"][ctx.node] = "Secondary"
    unlink_device(device)


def status_text(st: dict, r: dict, name: str, node: str) -> str:
    """drbdsetup-84 status (status_cmd(): 8.4 states in DRBD 9 words)."""
    lines = [f"{name} role:{r['role'][node]}", f"  disk:{r['disk'][node]}"]
    cs = cstate(st, r, node)
    if cs == "StandAlone":
        pass   # no net config, no connection entry
    elif cs == "WFConnection":
        lines.append("  peer connection:Connecting")
    else:
        lines.append(f"  peer role:{peer_role(st, r, node)}")
        repl = "Established" if cs == "Connected" else cs
        extra = ""
        if r.get("sync"):
            rate = st["settings"]["drbd_sync_rate"]
            done = min(99.99, 100.0 * (time.time() - r["sync"]["start"]) * rate / r["size"])
            extra = f" done:{done:.2f}"
        lines.append(f"    replication:{repl} peer-disk:{peer_disk(st, r, node)}{extra}")
    return "\n".join(lines) + "\n\n"


def run_setup(ctx, st: dict, name: str, cmd: str, args: list[str]) -> tuple[str, int]:
    """One drbdsetup-84 call; returns (stdout, code) or raises Failed."""
    r = st["drbd"][name]
    refresh(st, r, name, ctx.store)
    node = ctx.node
    if cmd == "primary":
        primary(ctx, st, r, name, force=any(a in ("--force", "--overwrite-data-of-peer")
                                            for a in args))
    elif cmd == "secondary":
        secondary(ctx, st, r, name)
    elif cmd in ("role", "cstate", "dstate"):
        if not r["up"].get(node):
            raise not_allocated(r["minor"])
        return ({"role": f"{r['role'][node]}/{peer_role(st, r, node)}",
                 "cstate": cstate(st, r, node),
                 "dstate": f"{r['disk'][node]}/{peer_disk(st, r, node)}"}[cmd] + "\n", 0)
    elif cmd == "status":
        if not r["up"].get(node):
            raise Failed([f"{name}: No such resource"], 10)
        return status_text(st, r, name, node), 0
    elif cmd == "up":
        if r["up"].get(node):
            raise Failed([f"{r['minor']}: Failure: (124) Device is attached to a disk "
                          "(use detach first)"], 10)
        r["up"][node], r["role"][node], r["standalone"][node] = True, "Secondary", False
        refresh(st, r, name, ctx.store)
    elif cmd == "down":
        secondary(ctx, st, r, name, down=True)
        r["up"][node] = False
    elif cmd == "connect":
        r["standalone"][node] = False
        refresh(st, r, name, ctx.store)
    elif cmd == "disconnect":
        r["standalone"][node] = True
    elif cmd == "outdate":
        if linked(st, r, node):
            raise state_failed(r["minor"], -6)
        r["disk"][node] = "Outdated"
    elif cmd == "create-md":
        return "New drbd meta data block successfully created.\nsuccess\n", 0
    else:
        raise Failed([f"drbdadm: simulated DRBD has no '{cmd}' command"], 20)
    return "", 0


def setup_argv(r: dict, name: str, cmd: str, args: list[str]) -> str:
    obj = name if cmd in ("status", "down", "connect", "disconnect") else str(r["minor"])
    return " ".join([SETUP, cmd, obj, *args])


def main(ctx, args: list[str]) -> int:
    if ctx.tool == "drbdsetup":
        return drbdsetup(ctx, args)
    # drbdadm [-c file] [--] [--force] CMD RES; DRBD 8 syntax "drbdadm -- --overwrite-data-of-peer
    # primary r0" (seed 001) passes the option through to drbdsetup.
    words, opts, skip = [], [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-c", "--config-file"):
            skip = True
        elif a.startswith("--") and a != "--":
            opts.append(a)
        elif not a.startswith("-"):
            words.append(a)
    if len(words) < 1:
        sys.stderr.write("USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}\n")
        return 1
    cmd, names = words[0], words[1:] or ["all"]
    ret = 0
    with ctx.store.locked(write=True) as st:
        mine = [n for n, r in st["drbd"].items() if ctx.node in r["nodes"]]
        if names == ["all"]:
            names = mine
        for name in names:
            if name not in mine:
                sys.stderr.write(f"'{name}' not defined in your config (for this host).\n")
                return 1
        for name in names:
            r = st["drbd"][name]
            try:
                out, _ = run_setup(ctx, st, name, cmd, opts)
                sys.stdout.write(out)
            except Failed as exc:
                sys.stderr.write("\n".join(exc.lines) + "\n")
                sys.stderr.write(f"Command '{setup_argv(r, name, cmd, opts)}' "
                                 f"terminated with exit code {exc.code}\n")
                ret = ret or exc.code
    return ret


def drbdsetup(ctx, args: list[str]) -> int:
    """drbdsetup <cmd> <minor|resource|all> [options] for status/role/cstate/dstate."""
    if len(args) < 2:
        sys.stderr.write("USAGE: drbdsetup command {arguments} [options]\n")
        return 20
    cmd, obj = args[0], args[1]
    with ctx.store.locked(write=True) as st:
        names = [n for n, r in st["drbd"].items() if ctx.node in r["nodes"] and
                 (obj in ("all", n) or obj == str(r["minor"]) or obj == f"/dev/drbd{r['minor']}")]
        if not names:
            sys.stderr.write(f"{obj}: No such resource\n" if cmd == "status" else
                             "\n".join(not_allocated(obj).lines) + "\n")
            return 10
        for name in names:
            try:
                out, _ = run_setup(ctx, st, name, cmd, args[2:])
                sys.stdout.write(out)
            except Failed as exc:
                sys.stderr.write("\n".join(exc.lines) + "\n")
                return exc.code
    return 0


def node_down(store, st: dict, node: str) -> None:
    for name, r in st["drbd"].items():
        if node in r["nodes"]:
            r["up"][node] = False
            r["role"][node] = "Secondary"
            unlink_device(os.path.join(store.dev_dir(node), f"drbd{r['minor']}"))
