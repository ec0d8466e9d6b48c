"""Simulated drbdadm/drbdsetup for a DRBD 8.4 kernel (Debian's in-tree module, the seeds'
DRBD 8) or a DRBD 9 kernel, both driven by drbd-utils 9; chosen per world with
World.configure(drbd_version="8.4" | "9") (docs/reference/drbd.md; docs/reference/drbd.md §2).

drbdadm runs one drbdsetup per step: "drbdsetup-84 <cmd> <minor|res>" on 8.4, "drbdsetup
<cmd> <res> [peer-node-id]" on 9 (user/v9/drbdadm_main.c __adm_drbdsetup()). A failing
drbdsetup prints "<obj>: State change failed: (<rv>) <text>" or "<obj>: Failure: (<n>) ..."
(user/v84|v9/drbdsetup.c print_config_error(): exit 17 for SS_NO_UP_TO_DATE_DISK, 11 for
other state changes, 10 for other failures) and drbdadm adds "Command '...' terminated with
exit code N" (user/shared/shared_main.c m__system()). On 9 the object is the resource name
(primary/secondary/role are per resource, CTX_RESOURCE); on 8.4 the minor.

Data: one shared image per resource (protocol C: both disks hold the same bytes).
/dev/drbdN exists while the resource is up, whatever the role: DRBD creates the minor on
`up` (user/v9/drbdadm_main.c adm_up(): new-minor) and removes it on `down`. A real Secondary
refuses opens in the kernel (drbd_main.c drbd_open(): 8.4 EROFS for a writer, EMEDIUMTYPE for
a reader; 9 auto-promotes a writer when it can, and a reader gets EMEDIUMTYPE while a peer
is Primary or no disk is UpToDate); here the device is a plain hard link to the image and a
Secondary's opens are not refused: nothing in the kinds opens it.
"""
from __future__ import annotations

import os
import sys
import time

from hahooks.lab.sim import checks, drbd_text
from hahooks.lab.sim.state import connected, link_device, unlink_device

STATE_ERRORS = {-1: "Multiple primaries not allowed by config",
                -2: "Need access to UpToDate data",
                -6: "Refusing to be Outdated while Connected",
                -12: "Device is held open by someone"}
# commands whose drbdsetup object is the resource name (the rest take the minor)
BY_NAME_84 = ("status", "down", "connect", "disconnect")
BY_NAME_9 = ("status", "down", "connect", "disconnect", "primary", "secondary", "role",
             "cstate", "outdate")
PER_PEER_9 = ("cstate", "connect", "disconnect")   # CTX_PEER_NODE: "<res> <peer-node-id>"


class Failed(Exception):
    def __init__(self, lines: list[str], code: int):
        super().__init__(lines)
        self.lines, self.code = lines, code


def v9(st: dict) -> bool:
    return str(st["settings"].get("drbd_version", "8.4")).startswith("9")


def obj_of(st: dict, r: dict, name: str, cmd: str):
    return name if cmd in (BY_NAME_9 if v9(st) else BY_NAME_84) else r["minor"]


def state_failed(obj, rv: int) -> Failed:
    return Failed([f"{obj}: State change failed: ({rv}) {STATE_ERRORS[rv]}"],
                  17 if rv == -2 else 11)


def not_up(st: dict, r: dict, name: str, cmd: str) -> Failed:
    """The resource is down: 8.4 "Device minor not allocated" (ERR_MINOR_INVALID, 127);
    9 role_cmd() "Unknown resource", cstate_cmd() "No such connection", dstate_cmd()
    "No such device", status_cmd() "No such resource" (all exit 10)."""
    if cmd == "status":
        return Failed([f"{name}: No such resource"], 10)
    if not v9(st):
        return Failed([f"{r['minor']}: Failure: (127) Device minor not allocated",
                       "additional info from kernel:", "unknown minor"], 10)
    text = {"cstate": "No such connection", "dstate": "No such device"}.get(
        cmd, "Unknown resource")
    return Failed([f"{obj_of(st, r, name, cmd)}: {text}"], 10)


# -- derived state -------------------------------------------------------------------------
def peer_of(r: dict, node: str) -> str:
    return next((n for n in r["nodes"] if n != node), "")


def device_of(store, r: dict, node: str) -> str:
    return os.path.join(store.dev_dir(node), f"drbd{r['minor']}")


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
    """8.4 connection state: StandAlone, WFConnection, Connected, SyncSource/Target."""
    if r["standalone"].get(node):
        return "StandAlone"
    if not linked(st, r, node):
        return "WFConnection"
    sync = r.get("sync")
    if sync:
        return "SyncSource" if sync["source"] == node else "SyncTarget"
    return "Connected"


def cstate_9(st: dict, r: dict, node: str) -> str:
    """DRBD 9 splits it: the connection (StandAlone, Connecting, Connected) and, per peer
    device, the replication state (Established, SyncSource, ...)."""
    cs = cstate(st, r, node)
    return {"WFConnection": "Connecting", "StandAlone": "StandAlone"}.get(cs, "Connected")


def peer_role(st: dict, r: dict, node: str) -> str:
    return r["role"][peer_of(r, node)] if linked(st, r, node) else "Unknown"


def peer_disk(st: dict, r: dict, node: str) -> str:
    return r["disk"][peer_of(r, node)] if linked(st, r, node) else "DUnknown"


def view(ctx, st: dict, r: dict, name: str) -> dict:
    """Everything drbd_text prints about `name` as ctx.node sees it."""
    node = ctx.node
    cs, done = cstate(st, r, node), None
    if r.get("sync") and cs in ("SyncSource", "SyncTarget"):
        rate = st["settings"]["drbd_sync_rate"]
        done = min(99.99, 100.0 * (time.time() - r["sync"]["start"]) * rate / r["size"])
    device = device_of(ctx.store, r, node)
    return {"name": name, "role": r["role"][node], "disk": r["disk"][node],
            "peer": peer_of(r, node), "node_id": r["nodes"].index(node),
            "peer_node_id": r["nodes"].index(peer_of(r, node)), "minor": r["minor"],
            "backing_dev": ctx.store.path(r["image"]),
            # a Secondary cannot be opened (see the module docstring); the hard links share
            # one inode, so only the Primary's own use counts
            "open": r["role"][node] == "Primary" and bool(checks.usage(device,
                                                                       (ctx.store.root,))),
            "cstate": cs if not v9(st) else cstate_9(st, r, node),
            "repl": "Established" if cs in ("Connected", "WFConnection", "StandAlone") else cs,
            "peer_role": peer_role(st, r, node), "peer_disk": peer_disk(st, r, node),
            "done": done}


# -- commands ------------------------------------------------------------------------------
def primary(ctx, st: dict, r: dict, name: str, force: bool) -> None:
    obj = obj_of(st, r, name, "primary")
    if not r["up"].get(ctx.node):
        raise not_up(st, r, name, "primary")
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


def secondary(ctx, st: dict, r: dict, name: str, down: bool = False) -> None:
    if not r["up"].get(ctx.node):
        if down:
            return
        raise not_up(st, r, name, "secondary")
    device = device_of(ctx.store, r, ctx.node)
    if r["role"][ctx.node] == "Primary" and checks.usage(device, (ctx.store.root,)):
        raise state_failed(name if down else obj_of(st, r, name, "secondary"), -12)
    r["role"][ctx.node] = "Secondary"


def show(ctx, st: dict, r: dict, name: str, cmd: str, args: list[str]) -> str:
    """role, cstate, dstate, status: what each version prints (drbd_text)."""
    node = ctx.node
    if not r["up"].get(node):
        raise not_up(st, r, name, cmd)
    verbose = "--verbose" in args or "-v" in args
    if cmd == "status":
        if v9(st):
            return drbd_text.status_9(view(ctx, st, r, name), verbose)
        if verbose:
            raise Failed(["drbdsetup-84 status --verbose: not modelled by the simulator"], 20)
        return drbd_text.status_84(view(ctx, st, r, name))
    if cmd == "role":
        # 8.4 role_scmd() "Local/Peer"; 9 role_cmd() the resource's own role only
        return r["role"][node] + ("" if v9(st) else f"/{peer_role(st, r, node)}") + "\n"
    if cmd == "cstate":
        return (cstate_9(st, r, node) if v9(st) else cstate(st, r, node)) + "\n"
    return f"{r['disk'][node]}/{peer_disk(st, r, node)}\n"        # dstate, both versions


def run_setup(ctx, st: dict, name: str, cmd: str, args: list[str]) -> tuple[str, int]:
    """One drbdsetup call; returns (stdout, code) or raises Failed."""
    r = st["drbd"][name]
    refresh(st, r, name, ctx.store)
    node = ctx.node
    if cmd == "primary":
        primary(ctx, st, r, name, force=any(a in ("--force", "--overwrite-data-of-peer")
                                            for a in args))
    elif cmd == "secondary":
        secondary(ctx, st, r, name)
    elif cmd in ("role", "cstate", "dstate", "status"):
        return show(ctx, st, r, name, cmd, args), 0
    elif cmd == "up":
        if r["up"].get(node):
            raise Failed([f"{r['minor']}: Failure: (124) Device is attached to a disk "
                          "(use detach first)"], 10)
        r["up"][node], r["role"][node], r["standalone"][node] = True, "Secondary", False
        link_device(ctx.store.path(r["image"]), device_of(ctx.store, r, node))
        refresh(st, r, name, ctx.store)
    elif cmd == "down":
        secondary(ctx, st, r, name, down=True)
        r["up"][node] = False
        unlink_device(device_of(ctx.store, r, node))
    elif cmd == "connect":
        r["standalone"][node] = False
        refresh(st, r, name, ctx.store)
    elif cmd == "disconnect":
        r["standalone"][node] = True
    elif cmd == "outdate":
        if linked(st, r, node):
            raise state_failed(obj_of(st, r, name, cmd), -6)
        r["disk"][node] = "Outdated"
    elif cmd == "create-md":
        return "New drbd meta data block successfully created.\nsuccess\n", 0
    else:
        raise Failed([f"drbdadm: simulated DRBD has no '{cmd}' command"], 20)
    return "", 0


def setup_argv(st: dict, r: dict, name: str, node: str, cmd: str, args: list[str]) -> str:
    """The drbdsetup command line drbdadm reports in "Command '...' terminated"."""
    words = ["drbdsetup" if v9(st) else "drbdsetup-84", cmd, str(obj_of(st, r, name, cmd))]
    if v9(st) and cmd in PER_PEER_9:
        words.append(str(r["nodes"].index(peer_of(r, node))))
    return " ".join([*words, *args])


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
        elif a == "-v":
            opts.append("--verbose")
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
                sys.stderr.write(f"Command '{setup_argv(st, r, name, ctx.node, cmd, opts)}' "
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
                             "\n".join(not_up(st, {"minor": obj}, obj, cmd).lines) + "\n")
            return 10
        for name in names:
            try:
                out, _ = run_setup(ctx, st, name, cmd, [a for a in args[2:]
                                                        if a.startswith("-")])
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
            unlink_device(device_of(store, r, node))
