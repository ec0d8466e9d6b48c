"""The `drbd` kind through master/slave/status on the simulated DRBD 8.4 (drbdadm role,
dstate, cstate, primary, secondary), and what drbddisk does not do (docs/reference/drbd.md §4)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import require_tool
from hahooks import parsers, waits
from replication_helpers import (SandboxCluster, SimCluster, layer,  # noqa: F401
                                 mounted_in, sandbox, unique, world)


@pytest.mark.parametrize("text,pair", [
    ("Primary/Secondary\n", ("Primary", "Secondary")),      # drbdadm role, 8.4
    ("Secondary/Unknown\n", ("Secondary", "Unknown")),      # disconnected
    ("Primary\n", ("Primary", None)),                        # DRBD 9 prints the local role
    ("UpToDate/DUnknown\n", ("UpToDate", "DUnknown")),      # drbdadm dstate
    ("WFConnection\n", ("WFConnection", None)),              # drbdadm cstate
])
def test_split_pair(text, pair):
    assert parsers.split_pair(text) == pair


def cluster(tmp_path, world, r, node_extra="", lab=None, **params):
    c = SandboxCluster(tmp_path, world, lab) if lab else SimCluster(tmp_path, world)
    minor = world.state()["drbd"][r]["minor"]
    params = {"promote_wait": "1s", "demote_wait": "1s", **params}
    for n in c.nodes:
        c.write(n, layer("r0", "drbd", resource=r, minor=minor, **params), node_extra)
    return c, minor


def role(world, r, node) -> str:
    return world.state()["drbd"][r]["role"][node]


def test_failover_both_ways(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8)
    c, minor = cluster(tmp_path, world, r)
    assert c.hh("nodea", "status").returncode == 0          # Secondary: a clean slave
    c.hh("nodea", "master", check=0)
    assert role(world, r, "nodea") == "Primary"
    assert os.path.exists(c.dev("nodea", f"drbd{minor}"))
    st = c.hh("nodea", "status")
    assert st.returncode == 0, st.stdout
    assert "Primary, peer Secondary, Connected, disk UpToDate/UpToDate" in st.stdout
    c.hh("nodea", "slave", check=0)
    assert role(world, r, "nodea") == "Secondary"
    c.hh("nodeb", "master", check=0)
    assert role(world, r, "nodeb") == "Primary"
    assert not any("--force" in a for a in c.commands("nodeb", "drbdadm"))
    c.assert_no_violations()


def test_peer_primary_refuses(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    c, _ = cluster(tmp_path, world, r)
    p = c.hh("nodeb", "master")
    assert p.returncode == 1 and "refusing to promote" in p.stderr, p.stderr
    assert "the peer is Primary" in p.stderr
    assert role(world, r, "nodeb") == "Secondary"
    assert ["drbdadm", "primary", r] not in c.commands("nodeb", "drbdadm")  # never even tried
    c.assert_no_violations()


def test_promotes_once_the_peer_demotes_during_the_wait(tmp_path, world):
    """Each promote attempt asks drbdadm afresh (a kept answer would show the peer Primary
    until promote_wait ran out): the peer leaving Primary meanwhile is seen and taken."""
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    c, _ = cluster(tmp_path, world, r, promote_wait="30s")
    asked = lambda: c.commands("nodeb", "drbdadm").count(["drbdadm", "role", r])  # noqa: E731
    proc = subprocess.Popen([sys.executable, "-m", "hahooks", "master", "-c", c.configs["nodeb"]],
                            env=c.env("nodeb"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        waits.wait_for(lambda: asked() >= 2, 20, "nodeb to ask again while the peer is Primary")
        assert role(world, r, "nodeb") == "Secondary"
        c.run("nodea", "drbdadm", "secondary", r)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert role(world, r, "nodeb") == "Primary" and role(world, r, "nodea") == "Secondary"
    c.assert_no_violations()


def test_without_uptodate_data_refuses(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8)
    world.set_drbd(r, "nodeb", disk="Outdated", standalone=True)
    c, _ = cluster(tmp_path, world, r, unknown_peer="promote")
    p = c.hh("nodeb", "master")
    assert p.returncode == 1, p.stderr
    assert "no access to UpToDate data: local disk Outdated" in p.stderr
    assert role(world, r, "nodeb") == "Secondary"
    assert ["drbdadm", "primary", r] not in c.commands("nodeb", "drbdadm")
    c.assert_no_violations()


def test_inconsistent_but_connected_to_an_uptodate_peer_promotes(tmp_path, world):
    # DRBD's own rule: access to UpToDate data may be the peer's (a SyncTarget can be Primary)
    r = unique("r")
    world.add_drbd(r, size_mb=8)
    world.set_drbd(r, "nodeb", disk="Inconsistent")
    c, _ = cluster(tmp_path, world, r)
    c.hh("nodeb", "master", check=0)
    assert role(world, r, "nodeb") == "Primary"
    st = c.hh("nodeb", "status")
    assert st.returncode == 0 and "disk Inconsistent/UpToDate" in st.stdout, st.stdout
    c.assert_no_violations()


def test_peer_unseen_needs_the_fence(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    world.partition("nodea", "nodeb")        # nodea may still be Primary: nodeb cannot tell
    c, _ = cluster(tmp_path, world, r)
    p = c.hh("nodeb", "master")
    assert p.returncode == 1 and "may still be Primary unseen" in p.stderr, p.stderr
    assert role(world, r, "nodeb") == "Secondary"
    # a fence that powers nodea off: then the takeover is safe
    fence = [sys.executable, "-c",
             f"from hahooks.sim import World; World({world.root!r}).crash('nodea')"]
    c.write("nodeb", layer("r0", "drbd", resource=r, promote_wait="1s"),
            "fence = [" + ", ".join(f'"{a}"' for a in fence) + "]\n")
    c.hh("nodeb", "master", check=0)
    assert role(world, r, "nodeb") == "Primary"
    st = c.hh("nodeb", "status")
    assert st.returncode == 1 and "not replicating: connection WFConnection" in st.stdout
    c.assert_no_violations()


def test_unknown_peer_promote_is_drbddisk_behaviour(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    world.crash("nodea")
    c, _ = cluster(tmp_path, world, r, unknown_peer="promote")
    c.hh("nodeb", "master", check=0)
    assert role(world, r, "nodeb") == "Primary"
    c.assert_no_violations()


def test_down_resource_is_released_and_master_refuses(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8, up=False)
    c, _ = cluster(tmp_path, world, r)
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and "Unconfigured" in st.stdout, st.stdout
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "Unconfigured (not up)" in p.stderr
    c.assert_no_violations()


def test_demote_refused_while_mounted(tmp_path, sandbox):
    require_tool("mkfs.ext4")
    world, lab = sandbox                    # the mount lives in nodea's own namespace
    r = unique("r")
    world.add_drbd(r, size_mb=16, primary="nodea")
    c, minor = cluster(tmp_path, world, r, lab=lab)
    dev = c.dev("nodea", f"drbd{minor}")
    with mounted_in(c, "nodea", dev, tmp_path / "drbd") as mnt:
        p = c.hh("nodea", "slave")
        assert p.returncode == 1 and f"{dev} is mounted at {mnt}" in p.stderr, p.stderr
        assert ["drbdadm", "secondary", r] not in c.commands("nodea", "drbdadm")
        assert role(world, r, "nodea") == "Primary"
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


def test_dry_run(tmp_path, world):
    r = unique("r")
    world.add_drbd(r, size_mb=8)
    c, _ = cluster(tmp_path, world, r)
    p = c.hh("nodea", "master", "--dry-run", check=0)
    assert f"would run: drbdadm primary {r}" in p.stdout
    assert role(world, r, "nodea") == "Secondary"
