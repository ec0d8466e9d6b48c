"""The drill's operator stages (issue 20): maintenance mode ignoring a CARP flap, and a
switchover as one of the drill's steps.

* maintenance: both nodes in maintenance, the scenario's daemon delivers a flip to the other
  node (MASTER there, BACKUP here, the exact command lines of its wiring); the holder keeps
  the stack, each node's log records the event as `ignored`, status says WARNING; off again.
* switchover: `hahooks switchover --to PEER` on the holder. The peer's CARP reacting to the
  demotion is played here: once the holder's net.inet.carp.demotion (the simulator's
  sysctl) is raised, the peer gets MASTER and the holder BACKUP from their daemons, as
  carp(4) with preempt=1 would give them (docs/reference/carp-devd.md §4). The switchover
  confirms the peer through the replication layer itself. Only where the hand-over is
  CARP's (FreeBSD nodes) and a hast or drbd layer can confirm it; otherwise the stage says
  why it does not apply.
"""
from __future__ import annotations

import json
import threading

from hahooks import waits
from hahooks.lab.drill import checks


def maintenance_ignores_a_flap(cluster, verdict, holder: str) -> None:
    other = cluster.peer(holder)
    for node in cluster.nodes:
        r = cluster.hahooks(node, "maintenance", "on", "--reason", "drill")
        verdict.check(f"maintenance on for {node}", r.ok, r.tail() if not r.ok else "")
    before = {n: _count(cluster, n, "ignored") for n in cluster.nodes}
    # quiet: a MASTER marked as an event would count in the drill's failover figures
    cluster.mark(f"{cluster.sc.wiring} flip during maintenance: MASTER to {other}, BACKUP to "
                 f"{holder} (the wiring's own command lines)")
    flip = threading.Thread(target=cluster.event, args=(holder, "BACKUP", True))
    flip.start()
    cluster.event(other, "MASTER", True)
    flip.join()
    cluster.converge(other)
    cluster.converge(holder)
    checks.holder(cluster, verdict, holder, "after a CARP flap during maintenance")
    ignored = {n: _count(cluster, n, "ignored") - before[n] for n in cluster.nodes}
    verdict.check("the flap was recorded as ignored on both nodes",
                  all(ignored.values()), ", ".join(f"{n}: {c}" for n, c in ignored.items()))
    st = cluster.run(holder, [cluster.places[holder].hahooks, "status", "-q", "-c",
                              cluster.places[holder].config_path])
    verdict.check(f"status on {holder} says WARNING in maintenance", st.returncode == 1
                  and "maintenance mode on" in st.stdout, st.stdout.splitlines()[0]
                  if st.stdout else st.tail())
    if st.stdout:
        cluster.mark("status: " + st.stdout.splitlines()[0], holder)
    for node in cluster.nodes:
        r = cluster.hahooks(node, "maintenance", "off")
        verdict.check(f"maintenance off for {node}", r.ok, r.tail() if not r.ok else "")


def switchover_applies(cluster, node: str) -> str:
    """'' when the drill can run a switchover on `node`'s stack, else why not."""
    import tomllib

    with open(cluster.places[node].config_path, "rb") as fh:
        cfg = tomllib.load(fh)
    if cfg.get("node", {}).get("platform") != "freebsd":
        return "the hand-over is the wiring's own ([wiring] handover), not CARP's"
    if not any(r.get("kind") in ("hast", "drbd") for r in cfg.get("resource", [])):
        return "no hast or drbd layer to confirm the peer through"
    return ""


def switchover(cluster, verdict, holder: str, acked: list[int]) -> None:
    other = cluster.peer(holder)
    why_not = switchover_applies(cluster, holder)
    if why_not:
        verdict.check(f"switchover {holder} -> {other} not applicable", True, why_not)
        return
    stop = threading.Event()
    carp = threading.Thread(target=_carp_follows_demotion, args=(cluster, holder, stop))
    carp.start()
    try:
        r = cluster.hahooks(holder, "switchover", "--to", other, "--timeout", "90s",
                            timeout=240)
    finally:
        stop.set()
        carp.join()
    cluster.mark(f"switchover: exit {r.returncode}: "
                 f"{(r.stdout or r.stderr).strip().splitlines()[-1:]}", holder)
    verdict.check(f"switchover {holder} -> {other} confirmed", r.returncode == 0,
                  (r.stdout or r.stderr).strip()[-300:])
    cluster.converge(other)
    cluster.converge(holder)
    checks.holder(cluster, verdict, other, "after the switchover")
    checks.rows(cluster, verdict, other, acked)
    # the demotion stays on the old holder (switchover says so); lift it for what follows
    cluster.run(holder, ["sysctl", "net.inet.carp.demotion=-240"])


def _carp_follows_demotion(cluster, holder: str, stop: threading.Event) -> None:
    other = cluster.peer(holder)

    def demoted() -> bool:
        if stop.is_set():
            return True
        r = cluster.run(holder, ["sysctl", "-n", "net.inet.carp.demotion"], timeout=30)
        return r.ok and int(r.stdout.strip() or 0) > 0
    try:
        waits.wait_for(demoted, 180, f"{holder}'s CARP demotion")
    except Exception:
        return
    if stop.is_set():
        return
    cluster.mark(f"CARP: {holder} demoted, {other} (preempt) becomes MASTER")
    flip = threading.Thread(target=cluster.event, args=(holder, "BACKUP"))
    flip.start()
    cluster.event(other, "MASTER")
    flip.join()


def _count(cluster, node: str, event: str) -> int:
    import os

    path = cluster.places[node].log_file
    if not os.path.exists(path):
        return 0
    n = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                n += json.loads(line).get("event") == event
            except ValueError:
                continue
    return n
