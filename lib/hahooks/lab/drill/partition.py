"""The drill's partition case: the link between the nodes is cut while both stay up.

The holder keeps running as HAST primary (degraded) with its database; it is cut off, not
dead, so nothing the survivor can see proves it stopped writing. On FreeBSD the survivor's
`hastd: NAME (secondary)` workers outlive the cut by 2 * HAST_KEEPALIVE (20 s,
sbin/hastd/secondary.c; docs/reference/hast.md) and then exit, which looks exactly like a
primary that stepped down. The case waits for that, so the takeover meets the worst
moment: no worker to see, `hastctl role primary` exits 0, the new primary's I/O stalls in
`proto_connect_wait(conn, hr_timeout)` (sbin/hastd/primary.c `primary_connect()`), the
hast kind finds the resources not `complete` within `complete_wait`, rolls back, and goes
on only after `[node] fence` powered the cut-off holder off (`unknown_peer = "fence"`).
Expected: exactly one writer (the old holder is down), the fence used, every acknowledged
row on the new holder, the invariant log empty.
"""
from __future__ import annotations

import re
import time

from hahooks import waits
from hahooks.lab.drill import checks
from hahooks.errors import WaitTimeout

# the survivor's secondary workers exit hast_secondary_timeout (20 s) after the cut;
# this bounds the drill's wait for that, with room for a loaded machine
WORKERS_GONE_TIMEOUT = 45.0
SECONDARY = re.compile(r"hastd: \S+ \(secondary\)")


def has_hast(cluster) -> bool:
    from hahooks.lab.drill import stacks

    return any(layer["kind"] == "hast" for node in cluster.nodes
               for layer in stacks.layers(cluster.places[node]))


def cut(cluster, node: str) -> None:
    """Pull the node's cable (its switch port goes down: no client, no peer) and cut the
    simulator's replication link with it (the simulated hastd talks through the world)."""
    cluster.net.set_link(node, False)
    cluster.world.partition(node, cluster.peer(node))
    cluster.mark("link cut: cable pulled, replication link down (both nodes stay up)", node)


def heal(cluster, node: str) -> None:
    cluster.world.heal(node, cluster.peer(node))


def secondary_workers(cluster, node: str) -> list[str]:
    r = cluster.run(node, ["ps", "-eo", "args"], timeout=30)
    return SECONDARY.findall(r.stdout)


def wait_workers_gone(cluster, node: str) -> None:
    try:
        waits.wait_for(lambda: not secondary_workers(cluster, node), WORKERS_GONE_TIMEOUT,
                       f"{node}'s hastd secondary workers to exit after the cut", ceiling=0.2)
    except WaitTimeout as exc:
        raise RuntimeError(exc.one_line()) from None
    cluster.mark("its hastd: NAME (secondary) workers exited (2 * HAST_KEEPALIVE after the "
                 "cut): no sign of the cut-off primary is left", node)


def takeover(cluster, verdict, holder: str, rows: list[int]) -> str:
    """Cut `holder` off, let the survivor's workers expire, tell the survivor MASTER.
    Returns the survivor (the new holder)."""
    other = cluster.peer(holder)
    cut(cluster, holder)
    wait_workers_gone(cluster, other)
    fenced_before = len(cluster.desk.handled)
    alive = cluster.is_up(holder)
    since = time.time()
    cluster.event(other, "MASTER")
    cluster.converge(other, timeout=cluster.fence_budget)
    note_stall(cluster, other, since)
    fenced = [f for f in cluster.desk.handled[fenced_before:]
              if f["ok"] and f["request"]["target"] == holder]
    verdict.check(f"{other} fenced the cut-off {holder} (alive until then) before taking "
                  "over", alive and bool(fenced) and holder in cluster.down,
                  fenced[0]["detail"] if fenced else "no fence request answered")
    checks.holder(cluster, verdict, other, f"after the partition, {holder} fenced",
                  peer_down=True)
    checks.rows(cluster, verdict, other, rows)
    checks.no_violations(cluster, verdict)
    return other


def note_stall(cluster, node: str, since: float) -> None:
    """Name the HAST I/O stall in the timeline: the layer above HAST whose step took
    longest since `since` waited in the new primary's connect to the gone peer."""
    steps = [e for e in cluster.timeline.entries() if e.node == node and e.t >= since
             and e.data.get("event") == "step" and e.data.get("step") == "acquire"]
    upper = [e for e in steps if "(hast)" not in e.text]
    if upper:
        slow = max(upper, key=lambda e: e.data.get("duration", 0.0))
        cluster.mark(f"{slow.data['resource']} spent {slow.data['duration']:.1f}s in HAST I/O "
                     "stalled by the new primary's connect to the gone peer (hast.conf timeout "
                     "20 s, sbin/hastd/primary.c primary_connect())", node)


def rejoin(cluster, node: str) -> None:
    """The fenced node comes back on a healed link and rejoins as slave."""
    heal(cluster, node)
    cluster.boot(node)
    cluster.event(node, "BACKUP")
    cluster.converge(node)
