"""The drill's safety and data checks, each recorded in the verdict."""
from __future__ import annotations

import os
import re

from hahooks import waits
from hahooks.lab.drill import stacks, teardown
from hahooks.errors import WaitTimeout

SCRUB_TIMEOUT = 120.0


def holder(cluster, verdict, node: str, when: str, peer_down: bool = False) -> bool:
    peer = cluster.peer(node)
    mine, theirs = cluster.role(node), cluster.role(peer)
    ok_peer = ("down", "slave") if peer_down else ("slave",)
    return verdict.check(f"{node} holds the stack, {peer} nothing ({when})",
                         mine == "master" and theirs in ok_peer,
                         f"{node}: {mine}; {peer}: {theirs}")


def rows(cluster, verdict, node: str, acked: list[int]) -> bool:
    have = cluster.service.read(cluster, node)
    missing = sorted(set(acked) - have)
    return verdict.check(f"every acknowledged write is on {node}", not missing,
                         f"{len(acked)} acknowledged, {len(missing)} missing"
                         + (f" (first: {missing[:5]})" if missing else ""))


def no_violations(cluster, verdict, since: float = 0.0) -> bool:
    found = [v for v in cluster.violations() if v.get("time", 0) >= since]
    return verdict.check("simulator invariant log empty (no two primaries, no device pulled "
                         "under a mount, no pool imported twice)", not found,
                         "; ".join(f"{v.get('kind')}: {v.get('detail')}" for v in found[:3]))


def imported_pools(cluster) -> dict[str, list[str]]:
    out = {}
    for node in cluster.nodes:
        if node in cluster.down or not cluster.sc.zfs:
            out[node] = []
            continue
        r = cluster.run(node, ["zpool", "list", "-H", "-o", "name"], timeout=30)
        out[node] = r.stdout.split() if r.ok else []
    return out


def single_owner(cluster, verdict, when: str) -> bool:
    """No pool imported on both nodes, no replicated filesystem mounted on both."""
    pools = imported_pools(cluster)
    both = set(pools.get(cluster.nodes[0], [])) & set(pools.get(cluster.nodes[1], []))
    mounted = {n: _mounted_images(cluster, n) for n in cluster.nodes}
    twice = mounted[cluster.nodes[0]] & mounted[cluster.nodes[1]]
    return verdict.check(f"no pool imported and no filesystem mounted on both nodes ({when})",
                         not both and not twice,
                         f"pools on both: {sorted(both)}; images mounted on both: "
                         f"{sorted(twice)}")


def _mounted_images(cluster, node: str) -> set[str]:
    """Backing images this node has mounted (read from its mount namespace)."""
    from hahooks.lab.sim import checks as simchecks

    if node in cluster.down:
        return set()
    out = set()
    for image in teardown.images(cluster.workdir, cluster.root):
        ident = simchecks.identity(image)
        r = cluster.run(node, ["cat", "/proc/self/mountinfo"], timeout=30)
        for line in r.stdout.splitlines():
            if " - " not in line:
                continue
            source = line.split(" - ")[1].split()[1]
            if source.startswith("/dev/loop") and simchecks.loop_backing(source) == ident:
                out.add(os.path.basename(image))
    return out


def mountpoints_untouched(cluster, verdict) -> bool:
    """Nothing was ever written into a mountpoint while it was not mounted (it would land
    on the node's root filesystem and hide under the next mount)."""
    found = []
    for node in cluster.nodes:
        for layer in stacks.layers(cluster.places[node]):
            mp = layer.get("mountpoint") if layer["kind"] == "filesystem" else (
                os.path.join(cluster.root, layer["pool"]) if layer["kind"] == "zpool" else None)
            if mp and os.path.isdir(mp) and os.listdir(mp):
                found.append(f"{mp}: {sorted(os.listdir(mp))[:3]}")
    return verdict.check("nothing written into an unmounted mountpoint", not found,
                         "; ".join(sorted(set(found))))


def storage_clean(cluster, verdict, node: str) -> bool:
    """zpool scrub (ZFS, on the holder) or e2fsck -fn (ext4, after a release)."""
    layer = stacks.storage_layer(cluster.places[node])
    if layer["kind"] == "zpool":
        pool = layer["pool"]
        r = cluster.run(node, ["zpool", "scrub", pool], timeout=60)
        if not r.ok:
            return verdict.check(f"zpool scrub {pool} clean", False, r.tail())

        def finished():
            st = cluster.run(node, ["zpool", "status", pool], timeout=60).stdout
            return st if re.search(r"scrub (completed|repaired)", st) else None

        try:
            st = waits.wait_for(finished, SCRUB_TIMEOUT, "the scrub to finish", ceiling=0.2)
        except WaitTimeout as exc:
            return verdict.check(f"zpool scrub {pool} clean", False, exc.one_line())
        m = re.search(r"scrub \w+ after \S+ with (\d+) errors", st)
        clean = bool(m and m.group(1) == "0") and "No known data errors" in st
        return verdict.check(f"zpool scrub {pool} clean", clean,
                             (m.group(0) if m else st.strip().splitlines()[-1]))
    image = _image_of(cluster, node)
    r = cluster.run(node, ["e2fsck", "-fn", image], timeout=120)
    return verdict.check(f"e2fsck -fn {os.path.basename(image)} clean (after the release)",
                         r.returncode == 0, r.tail())


def _image_of(cluster, node: str) -> str:
    """The backing image of the filesystem: the simulated replicated device's image (HAST,
    DRBD), or the local md image of a mirror (the filesystem starts at offset 0)."""
    st = cluster.world.state()
    for layer in stacks.layers(cluster.places[node]):
        if layer["kind"] == "hast":
            return cluster.world.store.path(st["hast"][layer["resources"][0]]["image"])
        if layer["kind"] == "drbd":
            return cluster.world.store.path(st["drbd"][layer["resource"]]["image"])
        if layer["kind"] == "md":
            return layer["file"]
    raise FileNotFoundError(f"{node}: no replicated image below the filesystem")


def final(cluster, verdict) -> None:
    no_violations(cluster, verdict)
    single_owner(cluster, verdict, "at the end")
    mountpoints_untouched(cluster, verdict)
    node = cluster.holder()
    if node is None:
        verdict.check("a node holds the stack at the end", False, "none")
        return
    layer = stacks.storage_layer(cluster.places[node])
    if layer["kind"] == "zpool":
        storage_clean(cluster, verdict, node)
    else:
        cluster.event(node, "BACKUP")       # release, then check the filesystem offline
        cluster.converge(node)
        verdict.check(f"{node} released the stack for the offline check",
                      cluster.role(node) == "slave", cluster.role(node))
        storage_clean(cluster, verdict, node)


def figures(cluster) -> dict:
    """Seconds from each MASTER event to the end of that node's master transition."""
    out: dict[str, str] = {}
    entries = cluster.timeline.entries()
    for i, e in enumerate(entries):
        if e.level != 0 or e.data.get("event") != "MASTER":
            continue
        stage = next((m.text for m in reversed(entries[:i]) if m.level == 0 and not m.node),
                     "")
        for later in entries[i + 1:]:
            if later.node == e.node and later.data.get("event") == "transition_end" and \
                    later.data.get("role") == "master":
                if later.data.get("ok"):
                    out[f"{stage} ({e.node})"] = f"{later.t - e.t:.2f}s event -> stack held"
                break
    return out
