"""Simulated hastctl (docs/reference/hast.md §2; sbin/hastctl/hastctl.c, sbin/hastd/control.c).

The resources a node has (its hast.conf) are the world's HAST resources naming that node;
`-c config` is accepted and ignored. hastd is the node daemon of hastd.py: when it is
stopped (World.stop_hastd) or the node is down, every command fails to connect (exit 71).
"""
from __future__ import annotations

import os
import sys
import time

from hahooks.lab.sim import checks, hastd
from hahooks.lab.sim.state import connected, node_state
from hahooks.lab.sim.util import Usage, getopt, humanize_number

EX_USAGE, EX_OSERR = 64, 71
EHAST_NOENTRY = 1
CONTROL = "uds:///var/run/hastctl"
ROLES = ("init", "primary", "secondary")
EXTENTSIZE, KEEPDIRTY, IDLE_QUEUE = 2097152, 64, 255
WORKER_REAP_TIMEOUT = 5.0
POLL = 0.002

USAGE = (  # docs/reference/hast.md §1 "Usage text" (modern hastctl.c, with list)
    "usage: hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty]\n"
    "\t\t[-m mediasize] name ...\n"
    "       hastctl role [-d] [-c config] <init | primary | secondary> all | name ...\n"
    "       hastctl list [-d] [-c config] [all | name ...]\n"
    "       hastctl status [-d] [-c config] [all | name ...]\n"
    "       hastctl dump [-d] [-c config] [all | name ...]\n")

OPTSTRINGS = {"create": "c:de:k:m:h", "role": "c:dh", "list": "c:dh", "status": "c:dh",
              "dump": "c:dh"}


def usage() -> int:
    sys.stderr.write(USAGE)
    return EX_USAGE


def main(ctx, args: list[str]) -> int:
    if not args or args[0] not in OPTSTRINGS:
        return usage()
    cmd = args[0]
    try:
        opts, rest = getopt(args[1:], OPTSTRINGS[cmd], "hastctl")
    except Usage:
        return usage()
    if any(o == "h" for o, _ in opts):
        return usage()
    if cmd in ("create", "role") and not rest:
        return usage()
    if cmd == "create":
        return create(ctx, rest)
    if cmd == "dump":
        return dump(ctx, rest)
    if cmd == "role" and (len(rest) < 2 or rest[0] not in ROLES):
        return usage()
    if not hastd.reachable(ctx):
        sys.stderr.write(f"[ERROR] Unable to connect to hastd via {CONTROL}: "
                         f"{os.strerror(2)}.\n")
        return EX_OSERR
    if cmd == "role":
        return set_role(ctx, rest[0], rest[1:])
    names = rest or ["all"]
    with ctx.store.locked() as st:
        rows = resolve(st, ctx.node, names)
        info = [(name, describe(st, ctx.node, name) if ok else None) for name, ok in rows]
    return print_list(info) if cmd == "list" else print_status(info)


def my_resources(st: dict, node: str) -> list[str]:
    return [name for name, r in st["hast"].items() if node in r["nodes"]]


def resolve(st: dict, node: str, names: list[str]) -> list[tuple[str, bool]]:
    """control.c: "all" as the first name means every configured resource (the other
    names are ignored); an unknown name gets error EHAST_NOENTRY."""
    mine = my_resources(st, node)
    if names[0] == "all":
        return [(n, True) for n in mine]
    return [(n, n in mine) for n in names]


def peer_of(r: dict, node: str) -> str:
    return next((n for n in r["nodes"] if n != node), "")


def dirty_now(st: dict, r: dict, now: float | None = None) -> int:
    """Dirty bytes drain at hast_sync_rate while the primary is connected to a secondary."""
    dirty, since = r.get("dirty", 0), r.get("dirty_at", 0.0)
    primary = next((n for n in r["nodes"] if r["role"].get(n) == "primary"), None)
    if not dirty or primary is None:
        return dirty
    peer = peer_of(r, primary)
    if r["role"].get(peer) == "secondary" and connected(st, primary, peer):
        now = time.time() if now is None else now
        rate = st["settings"]["hast_sync_rate"]
        dirty = max(0, int(dirty - rate * max(0.0, now - since)))
        if dirty:   # whole extents only
            dirty = -(-dirty // EXTENTSIZE) * EXTENTSIZE
    return dirty


def describe(st: dict, node: str, name: str) -> dict:
    """The fields control.c sends for one resource, as this node's hastd sees them."""
    r = st["hast"][name]
    role = r["role"].get(node, "init")
    peer = peer_of(r, node)
    peer_role = r["role"].get(peer, "init")
    link = connected(st, node, peer)
    worker = hastd.worker_wanted(st, node, name)
    record = node_state(st, node)["hastd_workers"].get(name)
    info = {"role": role, "provname": name, "localpath": r["local"][node],
            "remoteaddr": node_state(st, peer)["addr"] if peer else "none",
            "replication": r.get("replication", "memsync"),
            "workerpid": record["pid"] if record and record.get("role") == role else 0,
            "status": None, "dirty": 0, "extentsize": 0, "keepdirty": 0, "idle": 0}
    if worker:
        info["extentsize"] = EXTENTSIZE
        info["idle"] = IDLE_QUEUE
        if role == "primary":
            # complete iff both remote connections exist (control.c); the worker makes them
            # in init_remote(), after init_ggate() made the device and once a peer that
            # acted as primary stepped down (primary.c hastd_primary(), docs/reference/hast.md §4)
            wait = r.get("peer_wait", {}).get(node)
            remote = bool(r["device"].get(node)) and not (wait and wait["gen"] ==
                                                           r["gen"].get(node))
            info["status"] = "complete" if remote and link and peer_role == "secondary" \
                else "degraded"
            info["keepdirty"] = KEEPDIRTY
            info["dirty"] = dirty_now(st, r)
        else:
            info["status"] = "complete"
    return info


def print_status(info: list[tuple[str, dict | None]]) -> int:
    """docs/reference/hast.md §2 `hastctl status`: the terse table of control_status() in hastctl.c."""
    ret = 0
    out = []
    for name, d in info:
        if not out:
            out.append("Name\tStatus\t Role\t\tComponents\n")
        if d is None:
            ret = ret or EHAST_NOENTRY
            out.append(f"{name}\tERR{EHAST_NOENTRY}\n")
            continue
        out.append(f"{name}\t{d['status'] or '-':<9}{d['role']:<15}{d['localpath']}\t"
                   f"{d['remoteaddr']}\n")
    sys.stdout.write("".join(out))
    return ret


def print_list(info: list[tuple[str, dict | None]]) -> int:
    """docs/reference/hast.md §2 `hastctl list`: the verbose form of control_list() in hastctl.c."""
    ret = 0
    out = []
    for name, d in info:
        out.append(f"{name}:\n")
        if d is None:
            ret = ret or EHAST_NOENTRY
            out.append(f"  error: {EHAST_NOENTRY}\n")
            continue
        out += [f"  role: {d['role']}\n", f"  provname: {d['provname']}\n",
                f"  localpath: {d['localpath']}\n",
                f"  extentsize: {d['extentsize']} ({humanize_number(d['extentsize'])}B)\n",
                f"  keepdirty: {d['keepdirty']}\n", f"  remoteaddr: {d['remoteaddr']}\n",
                f"  replication: {d['replication']}\n"]
        if d["status"]:
            out.append(f"  status: {d['status']}\n")
        if d["workerpid"]:
            out.append(f"  workerpid: {d['workerpid']}\n")
        out += [f"  dirty: {d['dirty']} ({humanize_number(d['dirty'])}B)\n",
                "  statistics:\n", "    reads: 0\n", "    writes: 0\n", "    deletes: 0\n",
                "    flushes: 0\n", "    activemap updates: 0\n",
                "    local errors: read: 0, write: 0, delete: 0, flush: 0\n",
                f"    queues: local: 0, send: 0, recv: 0, done: 0, idle: {d['idle']}\n"]
    sys.stdout.write("".join(out))
    return ret


def set_role(ctx, role: str, names: list[str]) -> int:
    """control_set_role_common(): per resource, same role is a no-op; leaving primary
    waits for the primary worker, whose cleanup destroys hast/<name> with gctl_force=1
    (docs/reference/hast.md §3 "Role semantics", §3); primary forks a worker and returns at once (the device
    appears later, hastd.py). Primary is granted even while the peer is primary (docs/reference/hast.md §4)."""
    ret = 0
    leaving = []
    with ctx.store.locked(write=True) as st:
        rows = resolve(st, ctx.node, names)
        # one scan for every device this call destroys (benchmarks switch 64 at once)
        in_use = checks.usage_many(
            [ctx.dev("hast", n) for n, known in rows if known and role != "primary"
             and st["hast"][n]["role"].get(ctx.node) == "primary"], (ctx.store.root,))
        for name, known in rows:
            if not known:
                ret = ret or EHAST_NOENTRY
                sys.stderr.write(f"[WARNING] [{name}] Received error {EHAST_NOENTRY} "
                                 "from hastd.\n")
                continue
            r = st["hast"][name]
            old = r["role"].get(ctx.node, "init")
            if old == role:
                continue
            if old == "primary":
                device_destroyed(ctx, r, name, in_use.get(ctx.dev("hast", name), []))
                leaving.append(name)
            r["role"][ctx.node] = role
            r["gen"][ctx.node] = r["gen"].get(ctx.node, 0) + 1
            r.get("secondary_until", {}).pop(ctx.node, None)
            if role == "primary":
                become_primary(ctx, st, r, name)
        hastd.destroy_devices(ctx.store, ctx.node, leaving)   # one control edit for all
    hastd.kick_all(ctx.store)
    hastd.wait_workers_gone(ctx.store, ctx.node, leaving, WORKER_REAP_TIMEOUT)
    return ret


def become_primary(ctx, st: dict, r: dict, name: str) -> None:
    """hastctl returns at once; the worker (hastd.py) creates the device and, before its I/O
    flows, waits for the peer (sbin/hastd/primary.c hastd_primary(), init_remote()):
    - the connected peer is primary: it answers "Remote node acts as primary ..." with the
      wait flag, and the worker waits up to `timeout` for it to become secondary;
    - the peer is down or cut off (no TCP reset): proto_connect_wait(conn, hr_timeout)
      blocks up to the same timeout. A peer that is up without hastd refuses at once."""
    now = time.time()
    peer = peer_of(r, ctx.node)
    delay = st["settings"]["hast_device_delay"] if r.get("device_delay") is None \
        else r["device_delay"]
    waits = r.setdefault("peer_wait", {})
    waits.pop(ctx.node, None)
    why = None
    if peer and connected(st, ctx.node, peer):
        if r["role"].get(peer) == "primary" and st["nodes"][peer].get("hastd") == "running":
            why = "primary"
    elif peer:
        why = "connect"
    if why:
        waits[ctx.node] = {"why": why, "gen": r["gen"][ctx.node],
                           "until": now + st["settings"]["hast_peer_primary_wait"]}
    r["device_due"][ctx.node] = now + delay
    r["primary_since"][ctx.node] = now


def device_destroyed(ctx, r: dict, name: str, used: list[str]) -> None:
    """Bookkeeping and the in-use check for a device set_role() destroys."""
    device = ctx.dev("hast", name)
    if os.path.lexists(device):
        if used:
            ctx.violation("device_removed_in_use",
                          f"/dev/hast/{name} destroyed while in use: {', '.join(used)} "
                          "(docs/reference/hast.md: the primary worker's cleanup destroys "
                          "the provider with gctl_force=1, sbin/hastd/primary.c cleanup())",
                          resource=name, device=device)
    r["device"][ctx.node] = False


def create(ctx, names: list[str]) -> int:
    """`hastctl create` initialises metadata (no daemon needed). The simulator notes it:
    running it during failover discards metadata and forces a full sync (docs/reference/hast.md §6)."""
    ec = 0
    with ctx.store.locked(write=True) as st:
        mine = my_resources(st, ctx.node)
        for name in names:
            if name not in mine:
                sys.stderr.write(f"[ERROR] Unknown resource {name}.\n")
                ec = ec or 65
                continue
            r = st["hast"][name]
            r["dirty"] = r.get("size", 0)
            r["dirty_at"] = time.time()
            r.setdefault("created", {})[ctx.node] = time.time()
    return ec


def dump(ctx, names: list[str]) -> int:
    ec = 0
    with ctx.store.locked() as st:
        rows = resolve(st, ctx.node, names or ["all"])
        for name, known in rows:
            if not known:
                sys.stderr.write(f"[ERROR] Unknown resource {name}.\n")
                ec = ec or 65
                continue
            r = st["hast"][name]
            size = r.get("size", 0)
            role = r.get("prevrole", {}).get(ctx.node, r["role"].get(ctx.node, "init"))
            sys.stdout.write(
                f"resource: {name}\n"
                f"    datasize: {size} ({humanize_number(size)}B)\n"
                f"    extentsize: {EXTENTSIZE} ({humanize_number(EXTENTSIZE)}B)\n"
                f"    keepdirty: {KEEPDIRTY}\n    localoff: 0\n    resuid: 0\n"
                f"    localcnt: 0\n    remotecnt: 0\n    prevrole: {role}\n")
    return ec
