"""`hahooks switchover` (issue 20) on the simulator's DRBD and CARP sysctl: release here,
demote CARP (net.inet.carp.demotion, docs/reference/carp-devd.md §4), confirm the peer
Primary through DRBD (docs/reference/drbd.md §2). The peer's CARP reacting to the demotion
is played by `carp_peer`: once nodea's demotion is raised, nodeb gets devd's MASTER event,
as carp(4) with preempt=1 would give it."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from hahooks import waits
from replication_helpers import SimCluster, layer, unique


@pytest.fixture
def world(tmp_path):
    from hahooks.lab.sim import World

    w = World(str(tmp_path / "world"))
    yield w
    w.close()


def pair(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8)
    c = SimCluster(tmp_path, world)
    minor = world.state()["drbd"][r]["minor"]
    for node, peer in (("nodea", "nodeb"), ("nodeb", "nodea")):
        c.write(node, layer("r0", "drbd", resource=r, minor=minor, promote_wait="1s",
                            demote_wait="1s"), f'peer = "{peer}"\n')
    c.hh("nodea", "master", check=0)
    return c, r


def demotion(c, node: str) -> int:
    return int(c.run(node, "sysctl", "-n", "net.inet.carp.demotion").stdout)


def carp_peer(c, stop: threading.Event) -> threading.Thread:
    """nodeb's CARP and devd: MASTER once nodea is demoted."""
    def run():
        try:
            waits.wait_for(lambda: stop.is_set() or demotion(c, "nodea") > 0, 120,
                           "nodea's demotion")
        except Exception:
            return
        if not stop.is_set():
            c.hh("nodeb", "devd-event", "--wait", "CARP", "1@em0", "MASTER")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def role(world, r, node) -> str:
    return world.state()["drbd"][r]["role"][node]


def test_switchover_releases_demotes_and_confirms_the_peer(tmp_path, world):
    c, r = pair(tmp_path, world)
    stop = threading.Event()
    peer = carp_peer(c, stop)
    try:
        p = c.hh("nodea", "switchover", "--to", "nodeb", "--timeout", "60s")
    finally:
        stop.set()
        peer.join(timeout=120)
    assert p.returncode == 0, p.stderr
    assert "switchover to nodeb done: released here, nodeb is primary on r0" in p.stdout
    assert "sysctl net.inet.carp.demotion=-240" in p.stdout
    assert (role(world, r, "nodea"), role(world, r, "nodeb")) == ("Secondary", "Primary")
    assert demotion(c, "nodea") == 240
    # the release came before the demotion: nodeb never waited on a Primary nodea
    argvs = [a for a in (x["argv"] for x in world.commands("nodea")) if a]
    secondary = argvs.index(next(a for a in argvs if a[:2] == ["drbdadm", "secondary"]))
    demote = argvs.index(["sysctl", "net.inet.carp.demotion=240"])
    assert secondary < demote, argvs
    history = c.hh("nodea", "history").stdout
    assert "[switchover to nodeb]" in history, history
    assert c.hh("nodea", "status").returncode == 0       # a clean slave now
    c.assert_no_violations()


def test_switchover_not_confirmed_says_so(tmp_path, world):
    c, r = pair(tmp_path, world)                 # no carp_peer: nobody takes over
    p = c.hh("nodea", "switchover", "--timeout", "1s")
    assert p.returncode == 1
    assert "switchover not confirmed: released here and told nodeb" in p.stderr, p.stderr
    assert "`hahooks master`" in p.stderr
    assert role(world, r, "nodea") == "Secondary" and role(world, r, "nodeb") == "Secondary"
    c.assert_no_violations()


def test_switchover_refusals_change_nothing(tmp_path, world):
    c, r = pair(tmp_path, world)
    p = c.hh("nodea", "switchover", "--to", "nodec")
    assert p.returncode == 2 and "this node's peer is nodeb" in p.stderr
    p = c.hh("nodeb", "switchover")                   # nodeb holds nothing
    assert p.returncode == 1 and "does not hold the stack" in p.stderr
    world.crash("nodeb")                              # peer gone: not ready
    p = c.hh("nodea", "switchover")
    assert p.returncode == 1 and "nodeb is not ready to take over" in p.stderr, p.stderr
    assert role(world, r, "nodea") == "Primary" and demotion(c, "nodea") == 0
    c.assert_no_violations()


def test_switchover_needs_a_replication_layer(tmp_path, write_config):
    from core_support import Stack

    stack = Stack(tmp_path, write_config, names=("a",), node_extra='peer = "nodeb"\n'
                  'platform = "linux"\n', extra_body='\n[wiring]\nhandover = ["true"]\n')
    assert stack.hahooks("master").returncode == 0
    p = stack.hahooks("switchover")
    assert p.returncode == 1 and "no hast or drbd layer" in p.stderr, p.stderr
    assert stack.held() == ["a"]
