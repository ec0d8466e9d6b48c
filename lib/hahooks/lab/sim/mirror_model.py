"""gmirror's model (docs/reference/gmirror.md §2), shared by the gmirror, mdconfig and ggate tools.

Metadata lives per backing image (st["gmirror_meta"], keyed by the image's path) as it lives
in a component's last sector, so it follows the data (a ggate export labelled on one node
tastes into a mirror on the other). A running mirror is per node (st["gmirror"][node]); a
provider with active metadata appearing on a node joins/starts its mirror ("tasting").
Data: /dev/mirror/NAME is a file of the node's GEOM server (geom.py, blockio.py) whose
writes go to every ACTIVE component and whose reads come from the first (local before ggate),
as g_mirror_register_request() sends a write to every ACTIVE disk and completes it when all
answered (sys/geom/mirror/g_mirror.c). A ggate component is the entry "@ggateN", so its gate
applies: while its server is gone the mirror's writes block; when it fails them (ggatec -t N)
the server drops it from the device and reports it, and the next gmirror command here
disconnects it (g_mirror_regular_request_error(), kern.geom.mirror.disconnect_on_failure=1):
the mirror runs DEGRADED. A rebuild copies the data when its simulated progress
(gmirror_sync_rate) reaches 100%.
"""
from __future__ import annotations

import os
import time

from hahooks.lab.sim import checks, geom
from hahooks.lab.sim.providers import copy_data, equal_data, image_of, size_of, strip_dev
from hahooks.lab.sim.state import syslog, unlink_device


class CtlError(Exception):
    """gctl_error(): geom(8) prints "gmirror: <msg>" and exits 1 (first error wins)."""


# -- helpers -------------------------------------------------------------------------------
def mirrors(st: dict, node: str) -> dict:
    return st.setdefault("gmirror", {}).setdefault(node, {})


def find(st: dict, node: str, name: str) -> dict:
    m = mirrors(st, node).get(name.removeprefix("mirror/"))
    if m is None:
        raise CtlError(f"No such device: {name}.")
    return m


def comp(m: dict, prov: str) -> dict | None:
    return next((c for c in m["components"] if c["prov"] == strip_dev(prov)), None)


def active(m: dict) -> list[dict]:
    return [c for c in m["components"] if c["state"] == "ACTIVE"]


def starting(m: dict) -> bool:
    """STARTING: tasted from fewer disks than its metadata counts; no provider yet."""
    return m.get("starting_until") is not None


def mirror_state(m: dict) -> str:
    if starting(m):
        return "STARTING"
    return "COMPLETE" if len(active(m)) == m["ndisks"] else "DEGRADED"


def mediasize(m: dict) -> int:
    sizes = [size_of(c["image"]) for c in m["components"]]
    return max(1, min(sizes) - 512) if sizes else 1


def device(store, node: str, name: str) -> str:
    return os.path.join(store.dev_dir(node), "mirror", name)


def server_name(name: str) -> str:
    """The mirror's file in the node's GEOM server."""
    return f"mirror-{name}"


def users(st: dict, node: str, prov: str) -> list[str]:
    """Why `prov` is busy on `node` because of a mirror (GEOM exclusive open)."""
    return [f"component of mirror/{name}" for name, m in mirrors(st, node).items()
            if comp(m, prov)]


def flush(m: dict) -> None:
    """Writes reach every ACTIVE component as they happen (the device fans them out): there
    is nothing left to copy. Kept for the verbs that call it before a change."""


def relink(store, st: dict, node: str, name: str, m: dict) -> None:
    """Serve /dev/mirror/NAME from the ACTIVE components (local before ggate, which is also
    the read source recorded in m["linked"]), after taking in the failures the server saw."""
    take_failures(store, st, node)
    if name not in mirrors(st, node):
        return
    act = active(m)
    if not act or starting(m):
        return
    ordered = sorted(act, key=lambda c: c["prov"].startswith("ggate"))
    backing = [f"@{c['prov']}" if c["prov"].startswith("ggate") else c["image"]
               for c in ordered]
    m["linked"] = ordered[0]["image"]
    geom.ensure(store, st, node)
    ctl = geom.control(store, node)
    if not ctl.set_backing(server_name(name), backing):
        ctl.expose(server_name(name), backing, size=mediasize(m))
    geom.expose_link(store, node, server_name(name), device(store, node, name))


def take_failures(store, st: dict, node: str) -> None:
    """Disconnect the components whose requests failed in the server (it already stopped
    sending them writes): g_mirror_regular_request_error() -> DISCONNECTED."""
    if not os.path.exists(geom.paths(store, node)[1]):
        return
    for event in geom.control(store, node).take_events():
        name = event["device"].removeprefix("mirror-")
        m = mirrors(st, node).get(name)
        c = comp(m, event["member"]) if m else None
        if c is not None and c["state"] == "ACTIVE":
            syslog(store, node, "kernel", f"GEOM_MIRROR: Request failed "
                                          f"(error={event['errno']}). {c['prov']}[WRITE]")
            syslog(store, node, "kernel",
                   f"GEOM_MIRROR: Device {name}: provider {c['prov']} disconnected.")
            detach_component(store, st, node, name, c, f"{c['prov']} failed")


def drop(store, st: dict, node: str, name: str, why: str) -> None:
    """The mirror has no component left, or is stopped: its provider goes away."""
    mirrors(st, node).pop(name)
    dev = device(store, node, name)
    used = checks.usage(dev, (store.root,)) if os.path.lexists(dev) else []
    if used:
        store.violation("device_removed_in_use",
                        f"/dev/mirror/{name} removed ({why}) while in use: {', '.join(used)}",
                        node=node, device=dev)
    geom.control(store, node).remove(server_name(name))     # open handles: ENXIO
    unlink_device(dev)


def detach_component(store, st: dict, node: str, name: str, c: dict, why: str) -> None:
    m = mirrors(st, node)[name]
    m["components"].remove(c)
    if m.get("linked") == c["image"]:
        m["linked"] = None
    if not m["components"]:
        drop(store, st, node, name, why)
    elif active(m):
        relink(store, st, node, name, m)
    else:
        geom.control(store, node).set_backing(server_name(name), [])


def update_meta(st: dict, m: dict) -> None:
    """g_mirror_update_metadata() on every connected disk: the disk count follows."""
    for c in m["components"]:
        meta = st["gmirror_meta"].get(c["image"])
        if meta:
            meta["ndisks"] = m["ndisks"]


def new_meta(st: dict, image: str, name: str, **fields) -> dict:
    meta = {"name": name, "priority": 0, "inactive": False, "autosync": True,
            "balance": "load", "ndisks": 1, "mid": 0}
    meta.update(fields)
    st["gmirror_meta"][image] = meta
    return meta


def taste(ctx, st: dict, prov: str) -> None:
    """A provider appeared on ctx.node: join or start its mirror if it carries active
    metadata (GEOM tastes every new provider)."""
    st.setdefault("gmirror_meta", {})
    image = image_of(st, ctx.store, ctx.node, prov)
    meta = st["gmirror_meta"].get(image) if image else None
    if not meta or meta["inactive"]:
        return
    node_mirrors = mirrors(st, ctx.node)
    m = node_mirrors.get(meta["name"])
    if m is None:
        # g_mirror.c: a new device waits STARTING for its other disks, at most
        # kern.geom.mirror.timeout seconds (docs/reference/gmirror.md)
        m = node_mirrors[meta["name"]] = {
            "ndisks": meta["ndisks"], "balance": meta["balance"], "autosync": meta["autosync"],
            "mid": meta["mid"], "components": [], "linked": None,
            "starting_until": time.time() + st["settings"].get("gmirror_timeout", 4.0)}
        state = "ACTIVE"
    elif m["mid"] != meta["mid"] or comp(m, prov):
        return   # kernel: "Device already configured" / already connected
    elif active(m) and equal_data(m["linked"] or active(m)[0]["image"], image):
        state = "ACTIVE"   # not resynced when nothing was written meanwhile (docs/reference/gmirror.md §5)
    else:
        state = "SYNCHRONIZING" if m["autosync"] else "STALE"
    m["components"].append({"prov": strip_dev(prov), "image": image, "state": state,
                            "priority": meta["priority"], "sync_start": time.time()})
    if len(m["components"]) >= m["ndisks"]:
        m["starting_until"] = None          # every disk is here: launch at once
    relink(ctx.store, st, ctx.node, meta["name"], m)


def provider_gone(ctx, st: dict, prov: str, node: str | None = None, store=None) -> None:
    """A provider vanishes (md detach, ggate destroy, server lost): its mirror loses it."""
    node = node or ctx.node
    store = store or ctx.store
    for name, m in list(mirrors(st, node).items()):
        c = comp(m, prov)
        if c:
            detach_component(store, st, node, name, c, f"{prov} went away")


def advance(store, st: dict, node: str) -> None:
    """Launch STARTING mirrors whose timeout passed (with the disks they have) and finish
    rebuilds whose simulated progress reached 100% (copying the data)."""
    rate = st["settings"].get("gmirror_sync_rate", 1 << 30)
    now = time.time()
    for name, m in mirrors(st, node).items():
        if starting(m) and now >= m["starting_until"]:
            m["starting_until"] = None
        for c in m["components"]:
            if c["state"] == "SYNCHRONIZING" and (now - c["sync_start"]) * rate >= mediasize(m):
                source = m.get("linked") or (active(m)[0]["image"] if active(m) else None)
                if source:
                    copy_data(source, c["image"])
                    c["state"] = "ACTIVE"
        relink(store, st, node, name, m)


def node_down(store, st: dict, node: str) -> None:
    for name in list(mirrors(st, node)):
        mirrors(st, node).pop(name)
        geom.control(store, node).remove(server_name(name))
        unlink_device(device(store, node, name))


