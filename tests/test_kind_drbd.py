"""The `drbd` kind through master/slave/status on the simulated DRBD 8.4 (drbdadm role,
dstate, cstate, primary, secondary) and DRBD 9 (drbdadm role prints the local role only,
the peer comes from `drbdadm status`; docs/reference/drbd.md), and what drbddisk does not
do (docs/reference/drbd.md §4). Tests taking `world` run on both versions."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import require_tool
from hahooks import parsers, waits
from replication_helpers import (SandboxCluster, SimCluster, layer,  # noqa: F401
                                 mounted_in, sandbox, unique)

VERSIONS = ["8.4", "9"]


@pytest.fixture(params=VERSIONS)
def world(request, tmp_path):
    """A fresh simulated world whose DRBD kernel is 8.4, then 9."""
    from hahooks.lab.sim import World

    w = World(str(tmp_path / "world"))
    w.configure(drbd_version=request.param)
    yield w
    w.close()


def on_9(world) -> bool:
    return world.state()["settings"]["drbd_version"] == "9"


def connected_word(world) -> str:
    """How the kind names a healthy connection: 8.4's cstate, 9's replication state."""
    return "Established" if on_9(world) else "Connected"


@pytest.mark.parametrize("text,pair", [
    ("Primary/Secondary\n", ("Primary", "Secondary")),      # drbdadm role, 8.4
    ("Secondary/Unknown\n", ("Secondary", "Unknown")),      # disconnected
    ("Primary\n", ("Primary", None)),                        # DRBD 9 prints the local role
    ("UpToDate/DUnknown\n", ("UpToDate", "DUnknown")),      # drbdadm dstate
    ("WFConnection\n", ("WFConnection", None)),              # drbdadm cstate
])
def test_split_pair(text, pair):
    assert parsers.split_pair(text) == pair


# `drbdadm status` of drbd-utils 9 (user/v9/drbdsetup.c status_cmd(), wrap_printf.c)
STATUS_9_SECONDARY = ("r0 role:Secondary\n  disk:UpToDate open:no\n  nodea role:Primary\n"
                      "    peer-disk:UpToDate\n\n")
STATUS_9_VERBOSE_SYNC = (
    "r0 node-id:1 role:Primary suspended:no force-io-failures:no\n"
    "  volume:0 minor:0 disk:UpToDate backing_dev:/dev/vg0/r0 quorum:yes open:yes\n"
    "      blocked:no\n"
    "  nodea node-id:0 connection:Connected role:Secondary tls:no congested:no\n"
    "      ap-in-flight:0 rs-in-flight:0\n"
    "    volume:0 replication:SyncSource peer-disk:Inconsistent done:42.10\n"
    "        resync-suspended:no\n\n")
STATUS_9_TWO_VOLUMES_CONNECTING = (
    "r0 role:Secondary\n  volume:0 disk:UpToDate open:no\n  volume:1 disk:Outdated open:no\n"
    "  nodea connection:Connecting\n\n")


@pytest.mark.parametrize("text,want", [
    (STATUS_9_SECONDARY, ("Secondary", "UpToDate",
                          [("nodea", "Connected", "Primary", "Established", "UpToDate")])),
    (STATUS_9_VERBOSE_SYNC, ("Primary", "UpToDate",
                             [("nodea", "Connected", "Secondary", "SyncSource",
                               "Inconsistent")])),
    (STATUS_9_TWO_VOLUMES_CONNECTING, ("Secondary", "Outdated",
                                       [("nodea", "Connecting", "Unknown", "Established",
                                         None)])),
    ("r0 role:Primary\n  disk:UpToDate open:yes\n\n", ("Primary", "UpToDate", [])),
])
def test_parse_drbd_status_9(text, want):
    """A key is placed by what came before it (the local role before any connection, the
    peer's after), whatever the wrapping; omitted fields mean Connected/Established."""
    st = parsers.parse_drbd_status(text)
    peers = [(p["name"], p["connection"], p["role"], p["replication"], p["peer_disk"])
             for p in st["peers"]]
    assert (st["name"], (st["role"], st["disk"], peers)) == ("r0", want)


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
    assert os.path.exists(c.dev("nodea", f"drbd{minor}"))   # a Secondary has the device too
    c.hh("nodea", "master", check=0)
    assert role(world, r, "nodea") == "Primary"
    st = c.hh("nodea", "status")
    assert st.returncode == 0, st.stdout
    assert (f"Primary, peer Secondary, {connected_word(world)}, disk UpToDate/UpToDate"
            in st.stdout)
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


def with_filesystem(c, tmp_path, r, minor):
    """drbd + a filesystem layer above it (it must never run in these tests)."""
    for n in c.nodes:
        c.write(n, layer("r0", "drbd", resource=r, minor=minor, promote_wait="1s")
                + layer("fs", "filesystem", device=c.dev(n, f"drbd{minor}"),
                        mountpoint=str(tmp_path / "mnt"), fstype="ufs"))


def layer_records(tmp_path, node, name) -> list[dict]:
    with open(tmp_path / f"{node}.jsonl") as f:
        return [rec for rec in map(json.loads, f) if rec.get("resource") == name]


def test_peer_primary_refuses_before_any_filesystem_layer_ran(tmp_path, world):
    """DRBD 9's `drbdadm role` prints no peer: the peer's Primary comes from `drbdadm
    status` (user/v9/drbdsetup.c connection_status() "role:"); the kind waits, refuses,
    and never even asks DRBD to promote; the filesystem above never runs."""
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    c, minor = cluster(tmp_path, world, r)
    with_filesystem(c, tmp_path, r, minor)
    p = c.hh("nodeb", "master")
    assert p.returncode == 1 and "the peer is Primary" in p.stderr, p.stderr
    assert ["drbdadm", "primary", r] not in c.commands("nodeb", "drbdadm")
    assert layer_records(tmp_path, "nodeb", "fs") == []
    assert role(world, r, "nodeb") == "Secondary"
    c.assert_no_violations()


def test_peer_unreachable_fence_runs_before_primary(tmp_path, world):
    """A cut link (both alive): the peer may be Primary unseen (8.4 WFConnection, 9
    "connection:Connecting"); the [node] fence runs first, while this node is still
    Secondary, and only then `drbdadm primary`; one Primary in the end."""
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    world.partition("nodea", "nodeb")
    seen = tmp_path / "role-at-fence"
    fence = [sys.executable, "-c",
             "from hahooks.lab.sim import World; w = World(%r); "
             "open(%r, 'w').write(w.state()['drbd'][%r]['role']['nodeb']); w.crash('nodea')"
             % (world.root, str(seen), r)]
    c, _ = cluster(tmp_path, world, r,
                   node_extra="fence = [" + ", ".join(json.dumps(a) for a in fence) + "]\n")
    c.hh("nodeb", "master", check=0)
    assert seen.read_text() == "Secondary"           # fenced before the promotion
    assert role(world, r, "nodeb") == "Primary" and role(world, r, "nodea") == "Secondary"
    c.assert_no_violations()


def test_promotes_once_the_peer_demotes_during_the_wait(tmp_path, world):
    """Each promote attempt asks drbdadm afresh (a kept answer would show the peer Primary
    until promote_wait ran out): the peer leaving Primary meanwhile is seen and taken."""
    r = unique("r")
    world.add_drbd(r, size_mb=8, primary="nodea")
    c, _ = cluster(tmp_path, world, r, promote_wait="30s")
    question = ["drbdadm", "status" if on_9(world) else "role", r]
    asked = lambda: c.commands("nodeb", "drbdadm").count(question)  # noqa: E731
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
             f"from hahooks.lab.sim import World; World({world.root!r}).crash('nodea')"]
    c.write("nodeb", layer("r0", "drbd", resource=r, promote_wait="1s"),
            "fence = [" + ", ".join(f'"{a}"' for a in fence) + "]\n")
    c.hh("nodeb", "master", check=0)
    assert role(world, r, "nodeb") == "Primary"
    st = c.hh("nodeb", "status")
    unseen = "Connecting" if on_9(world) else "WFConnection"
    assert st.returncode == 1 and f"not replicating: connection {unseen}" in st.stdout
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


@pytest.mark.parametrize("version", VERSIONS)
def test_demote_refused_while_mounted(tmp_path, sandbox, version):
    require_tool("mkfs.ext4")
    world, lab = sandbox                    # the mount lives in nodea's own namespace
    world.configure(drbd_version=version)
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
