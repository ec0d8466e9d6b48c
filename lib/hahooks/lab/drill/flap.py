"""The flap storm: CARP flips its mind hundreds of times (docs/reference/carp-devd.md §5), and
each flip reaches both nodes as devd delivers it: BACKUP to the old master, MASTER to the
new one, each after its own random delay (0-200 ms after the previous event), so the two
nodes see a flip in either order. Each node's events run serially (devd waits for its
action), each action is the real `hahooks devd-event --detach` of the node's rules.

At the end: exactly one node holds the stack, the one the last flip elected; no two
transitions of a node overlapped (the lock); the simulator logged no violation (never
two HAST primaries, never a device pulled under a mount) and no pool is imported twice.
"""
from __future__ import annotations

import dataclasses
import queue
import random
import threading
import time

from hahooks.lab.drill import checks
from hahooks.lab.drill.timeline import overlapping
from hahooks.lab.drill.verdict import Verdict

MAX_SPACING = 0.2


@dataclasses.dataclass
class StormResult:
    events: int
    flips: int
    elected: str
    holder: str | None
    overlaps: int
    violations: int
    seconds: float
    settle_seconds: float
    transitions: int
    superseded: int
    verdict: Verdict


def schedule(flips: int, nodes: tuple[str, str], rng: random.Random) -> list[tuple[float, str, str]]:
    """[(delay before this event, node, state)]; returns 2 events per flip."""
    out = []
    master = nodes[0]
    for _ in range(flips):
        master = rng.choice(nodes)           # a "flip" may re-elect the same node
        backup = nodes[1] if master == nodes[0] else nodes[0]
        pair = [(backup, "BACKUP"), (master, "MASTER")]
        rng.shuffle(pair)
        for node, state in pair:
            out.append((rng.uniform(0.0, MAX_SPACING), node, state))
    return out


def storm(cluster, events: int = 500, seed: int = 7) -> StormResult:
    rng = random.Random(seed)
    flips = (events + 1) // 2
    plan = schedule(flips, cluster.nodes, rng)
    elected = next(node for _, node, state in reversed(plan) if state == "MASTER")
    queues = {n: queue.Queue() for n in cluster.nodes}
    pause = threading.Event()

    def deliver(node: str) -> None:
        while True:
            state = queues[node].get()
            if state is None:
                return
            cluster.event(node, state, quiet=True)

    workers = [threading.Thread(target=deliver, args=(n,), daemon=True) for n in cluster.nodes]
    for w in workers:
        w.start()
    cluster.mark(f"flap storm: {len(plan)} CARP events ({flips} flips), random spacing "
                 f"0-{MAX_SPACING * 1000:.0f} ms; the last flip elects {elected}")
    started = time.time()
    for delay, node, state in plan:
        pause.wait(delay)
        queues[node].put(state)
    for n in cluster.nodes:
        queues[n].put(None)
    for w in workers:
        w.join()
    sent = time.time()
    for node in cluster.nodes:
        cluster.converge(node, timeout=180)
    settled = time.time()
    cluster.mark(f"flap storm over: events delivered in {sent - started:.1f}s, both nodes "
                 f"converged {settled - sent:.1f}s later")
    v = Verdict()
    holder = cluster.holder()
    checks.holder(cluster, v, elected, "after the storm")
    trans = [t for t in cluster.timeline.transitions() if (t["start"] or 0) >= started]
    over = overlapping(trans)
    v.check("0 overlapping transitions on a node", not over,
            f"{len(over)} overlapping pairs" if over else f"{len(trans)} transitions")
    found = [x for x in cluster.violations() if x.get("time", 0) >= started]
    checks.no_violations(cluster, v, since=started)
    checks.single_owner(cluster, v, "after the storm")
    fenced = [f for f in cluster.desk.handled if f.get("ok")]
    v.check("nobody was fenced (every flip was followed in time)", not fenced,
            f"{len(fenced)} fence(s)")
    superseded = sum(1 for t in trans if t["ok"] is False)
    return StormResult(len(plan), flips, elected, holder, len(over), len(found),
                       sent - started, settled - sent, len(trans), superseded, v)
