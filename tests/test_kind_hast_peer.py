"""The `hast` kind under upstream HAST semantics (docs/reference/hast.md): a new primary's
device exists at once but its I/O stalls while hastd waits for the peer, and starts "anyway"
after `timeout` (sbin/hastd/primary.c hastd_primary()); a lost primary's secondary worker
lingers 2 * HAST_KEEPALIVE (sbin/hastd/secondary.c). No layer above may touch the device
until the resource is `complete` or the peer is known down (fenced, or unknown_peer)."""
from __future__ import annotations

import os
import sys

from conftest import LIB
from hahooks import waits
from replication_helpers import SimCluster, layer, unique, world  # noqa: F401
from test_sim_support import titles


def stack(r: str, tmp_path, **hast) -> str:
    """hast below a `command` layer that stamps the moment it ran (the upper layer)."""
    mark = tmp_path / "upper-ran"
    return (layer("hast", "hast", resources=[r], secondary_wait="1s", complete_wait="1s",
                  **hast) +
            layer("upper", "command", acquire=["/bin/sh", "-c", f"date +%s.%N > {mark}"],
                  release=["rm", "-f", str(mark)], status=["test", "-e", str(mark)]))


def fence_line(world, tmp_path, target: str) -> str:
    """[node] fence: stamp the moment, then power `target` off (World.crash)."""
    mark = tmp_path / "fenced"
    code = (f"import sys, time; sys.path.insert(0, {LIB!r}); from hahooks.lab.sim import World; "
            f"open({str(mark)!r}, 'a').write('%f\\n' % time.time()); "
            f"World({world.root!r}).crash({target!r})")
    from hahooks.lab.drill.tomlout import dumps

    return dumps({"fence": [sys.executable, "-c", code]})


def stamp(path) -> float | None:
    return float(path.read_text().split()[0]) if os.path.exists(path) else None


def role_primary_starts(world, node: str, r: str) -> list[float]:
    return [c["start"] for c in world.commands(node)
            if c["argv"][:3] == ["hastctl", "role", "primary"] and r in c["argv"]]


def cluster(tmp_path, world, r, node_extra="", **hast) -> SimCluster:
    c = SimCluster(tmp_path, world)
    for n in c.nodes:
        c.write(n, stack(r, tmp_path, **hast), node_extra if n == "nodea" else "")
    return c


def test_peer_stays_primary_upper_layer_waits_for_fence_secondary_c(tmp_path, world):
    """The peer stays primary (connected): its worker here never exits, so nodea goes on
    only after the fence; the upper layer runs after the fence, never beside a primary."""
    world.configure(hast_peer_primary_wait=2.0)     # the connect stall after the fence
    r = unique()
    world.add_hast(r, size_mb=8, primary="nodeb")
    c = cluster(tmp_path, world, r, fence_line(world, tmp_path, "nodeb"))
    c.hh("nodea", "master", check=0)
    fenced, upper = stamp(tmp_path / "fenced"), stamp(tmp_path / "upper-ran")
    assert fenced is not None and upper is not None and fenced < upper
    assert all(start > fenced for start in role_primary_starts(world, "nodea", r))
    assert world.hast_role(r, "nodea") == "primary"
    assert world.violations() == []


def test_peer_stays_primary_without_fence_rolls_back_before_upper_layer(tmp_path, world):
    """Same, without a fence command: refused, nothing above ran, nodea still secondary."""
    r = unique()
    world.add_hast(r, size_mb=8, primary="nodeb")
    c = cluster(tmp_path, world, r)
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "still acts as primary" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "upper-ran")
    assert world.hast_role(r, "nodea") == "secondary"
    assert world.violations() == []


def partitioned_and_worker_gone(world, r):
    """nodeb primary, link cut, nodea's secondary worker already timed out: nothing on
    nodea says nodeb is still primary."""
    world.configure(hast_secondary_timeout=0.3, hast_peer_primary_wait=20.0)
    world.add_hast(r, size_mb=8, primary="nodeb")
    waits.wait_for(lambda: f"hastd: {r} (secondary)" in titles(), 5, "secondary worker")
    world.partition("nodea", "nodeb")
    waits.wait_for(lambda: f"hastd: {r} (secondary)" not in titles(), 10, "worker timeout")


def test_partition_fence_runs_before_the_promotion_that_stays_primary_c(tmp_path, world):
    """A partition (secondary worker gone, peer unreachable) is no proof that the peer left
    primary: `role primary` is not `complete` within complete_wait, so nodea rolls back
    (before hastd's own timeout would start it "anyway"), fences, then promotes; the upper
    layer runs only after the fence and the invariant log stays empty."""
    r = unique()
    partitioned_and_worker_gone(world, r)
    c = cluster(tmp_path, world, r, fence_line(world, tmp_path, "nodeb"))
    world.configure(hast_peer_primary_wait=2.0)   # connect stall after the fence, shortened
    c.hh("nodea", "master", check=0)
    fenced, upper = stamp(tmp_path / "fenced"), stamp(tmp_path / "upper-ran")
    assert fenced is not None and upper is not None and fenced < upper
    starts = role_primary_starts(world, "nodea", r)
    assert starts[-1] > fenced                    # the promotion that stayed came after it
    assert world.hast_role(r, "nodea") == "primary"
    assert world.violations() == []


def test_partition_without_fence_rolls_back_and_nothing_above_ran(tmp_path, world):
    """No fence and unknown_peer = "fence" (the default): rolled back to secondary, the upper
    layer never ran, and no two primaries ever ran."""
    r = unique()
    partitioned_and_worker_gone(world, r)
    c = cluster(tmp_path, world, r)
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "not complete" in p.stderr and "rolled back" in p.stderr
    assert not os.path.exists(tmp_path / "upper-ran")
    assert world.hast_role(r, "nodea") == "secondary"
    assert world.violations() == []


def test_unknown_peer_assume_down_goes_on_degraded(tmp_path, world):
    """unknown_peer = "assume-down": the operator says the peer is off; nodea goes on
    without fencing (after the connect stall) and runs degraded."""
    world.configure(hast_peer_primary_wait=2.0, hast_secondary_timeout=0.3)
    r = unique()
    world.add_hast(r, size_mb=8, primary="nodeb")
    waits.wait_for(lambda: f"hastd: {r} (secondary)" in titles(), 5, "secondary worker")
    world.crash("nodeb")
    waits.wait_for(lambda: f"hastd: {r} (secondary)" not in titles(), 10, "worker timeout")
    c = cluster(tmp_path, world, r, unknown_peer="assume-down")
    c.hh("nodea", "master", check=0)
    assert os.path.exists(tmp_path / "upper-ran")
    st = c.hh("nodea", "status")
    assert st.returncode == 1 and "degraded" in st.stdout, st.stdout
    assert world.violations() == []


def test_race_lost_to_a_live_primary_rolls_back_without_fencing_it(tmp_path, world):
    """CARP race: nodeb turns primary between nodea's secondary-worker check and its
    `role primary` (delayed here). nodea's worker waits for nodeb (I/O stalled), is not
    complete, rolls back; its secondary worker comes back (nodeb is alive and connected),
    so nodea fails without fencing a healthy primary. Nothing above ran."""
    r = unique()
    world.add_hast(r, size_mb=8)
    world.inject("hastctl role primary*", latency=4.0, node="nodea", times=1)
    late = f"(sleep 1; env HAHOOKS_SIM_NODE=nodeb hastctl role primary {r}) >/dev/null 2>&1 &"
    below = layer("race", "command", acquire=["/bin/sh", "-c", late], release=["true"],
                  state_file=str(tmp_path / "race"))
    c = SimCluster(tmp_path, world)
    c.write("nodea", below + stack(r, tmp_path), fence_line(world, tmp_path, "nodeb"))
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "not fencing it" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "fenced")
    assert not os.path.exists(tmp_path / "upper-ran")
    assert world.hast_role(r, "nodea") == "secondary"
    assert world.hast_role(r, "nodeb") == "primary"
    assert world.violations() == []
