"""The `hast` kind: parsers against the reference texts (docs/reference/hast.md §2), then
master/slave/status through the CLI on the simulator (FreeBSD command forms forced)."""
from __future__ import annotations

import os
import sys

import pytest

from conftest import require_tool
from hahooks import parsers
from replication_helpers import (SandboxCluster, SimCluster, mounted_in,  # noqa: F401
                                 sandbox, unique, world)

# -- parsers: the exact reference texts ----------------------------------------------------

# docs/reference/hast.md §2 `hastctl status` (terse form, "%-9s" status, "%-15s" role, localpath\tremoteaddr)
TERSE = ("Name\tStatus\t Role\t\tComponents\n"
         "disk1\tcomplete primary        /dev/ada1\t10.0.0.2\n"
         "disk2\t-        init           /dev/ada2\t10.0.0.2\n")

# docs/reference/hast.md §2 `hastctl list` (verbose form, later releases)
VERBOSE = """disk1:
  role: primary
  provname: disk1
  localpath: /dev/ada1
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 10.0.0.2
  replication: memsync
  status: degraded
  workerpid: 1234
  dirty: 4194304 (4.0MB)
  statistics:
    reads: 3
    writes: 4
    deletes: 0
    flushes: 0
    activemap updates: 1
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 255
disk9:
  error: 1
"""

# seed 003: FreeBSD 9-era `hastctl status` printed the verbose form ("..." elided lines)
SEED003 = """disk1:
role: primary
provname: disk1
localpath: /dev/ada1
...
remoteaddr: hast2
replication: fullsync
status: complete
dirty: 0 (0B)
...
"""


def test_parse_terse_status():
    got = parsers.parse_hastctl(TERSE)
    assert got["disk1"].status == "complete" and got["disk1"].role == "primary"
    assert got["disk1"].localpath == "/dev/ada1" and got["disk1"].remoteaddr == "10.0.0.2"
    assert got["disk2"].status is None and got["disk2"].role == "init"


def test_parse_terse_error_line():
    got = parsers.parse_hastctl("Name\tStatus\t Role\t\tComponents\nnope\tERR1\n")
    assert got["nope"].error == 1 and got["nope"].role is None


def test_parse_verbose_list():
    got = parsers.parse_hastctl(VERBOSE)
    d = got["disk1"]
    assert (d.role, d.status, d.dirty, d.remoteaddr) == ("primary", "degraded", 4194304,
                                                         "10.0.0.2")
    assert d.fields["workerpid"] == "1234"
    assert "reads" not in d.fields            # the statistics sub-block is not a field
    assert got["disk9"].error == 1


def test_parse_seed003_unindented_verbose():
    # a web page lost the indentation: the fields still parse
    got = parsers.parse_hastctl(SEED003)
    assert list(got) == ["disk1"]
    assert (got["disk1"].role, got["disk1"].status, got["disk1"].dirty) == ("primary",
                                                                             "complete", 0)


@pytest.mark.parametrize("n,text", [(0, "0B"), (2097152, "2.0MB"), (134217728, "128MB")])
def test_human_bytes_like_hastd(n, text):
    assert parsers.human_bytes(n) == text


# -- through the CLI on the simulator ----------------------------------------------------

def hast_stack(res, **params) -> str:
    names = res if isinstance(res, str) else "[" + ", ".join(f'"{r}"' for r in res) + "]"
    names = f'"{names}"' if isinstance(res, str) else names
    extra = "".join(f'{k} = "{v}"\n' for k, v in params.items())
    return f"""
[[resource]]
name = "disks"
kind = "hast"
resources = {names}
secondary_wait = "1s"
{extra}"""


def make(tmp_path, world, res, node_extra="", lab=None, **params):
    c = SandboxCluster(tmp_path, world, lab) if lab else SimCluster(tmp_path, world)
    for n in c.nodes:
        c.write(n, hast_stack(res, **params), node_extra)
    return c


def test_failover_both_ways(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8, primary=None)
    c = make(tmp_path, world, [r])
    assert c.hh("nodea", "status").returncode == 0          # both secondary: a clean slave
    c.hh("nodea", "master", check=0)
    assert os.path.exists(c.dev("nodea", "hast", r))
    assert world.hast_role(r, "nodea") == "primary"
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and "complete" in st.stdout, st.stdout
    c.hh("nodea", "slave", check=0)
    assert not os.path.exists(c.dev("nodea", "hast", r))
    c.hh("nodeb", "master", check=0)
    assert world.hast_role(r, "nodeb") == "primary" and os.path.exists(c.dev("nodeb", "hast", r))
    # one role call per transition, never `hastctl create` (docs/reference/hast.md §6)
    argvs = c.commands("nodeb", "hastctl") + c.commands("nodea", "hastctl")
    assert ["hastctl", "role", "primary", r] in argvs
    assert not any(a[1] == "create" for a in argvs)
    c.assert_no_violations()


def test_peer_still_primary_refuses(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8, primary="nodea")
    c = make(tmp_path, world, [r])
    p = c.hh("nodeb", "master")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert f"hastd: {r} (secondary) still running" in p.stderr
    assert "split brain" in p.stderr
    assert world.hast_role(r, "nodeb") == "secondary"
    assert not any(a[1:3] == ["role", "primary"] for a in c.commands("nodeb", "hastctl"))
    c.assert_no_violations()


def test_peer_primary_but_fenced_takes_over(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8, primary="nodea")
    c = SimCluster(tmp_path, world)
    # the fence "powers off" nodea: the simulator's crash
    fence = [sys.executable, "-c",
             f"from hahooks.lab.sim import World; World({world.root!r}).crash('nodea')"]
    c.write("nodeb", hast_stack([r]), "fence = [" + ", ".join(f'"{a}"' for a in fence) + "]\n")
    c.hh("nodeb", "master", check=0)
    assert world.hast_role(r, "nodeb") == "primary"
    assert not world.state()["nodes"]["nodea"]["up"]
    c.assert_no_violations()


def test_device_never_appears_rolls_back(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8)
    world.set_hast(r, device_delay=30)
    c = make(tmp_path, world, [r], device_wait="300ms")
    p = c.hh("nodea", "master")
    assert p.returncode == 1
    assert f"hast/{r} to appear" in p.stderr and "rolled back" in p.stderr, p.stderr
    assert world.hast_role(r, "nodea") == "secondary"
    assert not os.path.exists(c.dev("nodea", "hast", r))
    asked = [a[1:] for a in c.commands("nodea", "hastctl")]
    promote, demote = asked.index(["role", "primary", r]), asked.index(["role", "secondary", r])
    # right after `role primary`: the confirmation (hastd set the role before hastctl
    # returned); the device wait over, a new question for the message, not the answer
    # kept from before the wait; then the rollback's own look before `role secondary`
    assert asked[promote + 1:demote] == [["list", r]] * 3, asked
    assert f"(now: {r}=primary;" in p.stderr, p.stderr
    c.assert_no_violations()


def test_degraded_is_a_warning_with_dirty_bytes(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8)
    c = make(tmp_path, world, [r])
    c.hh("nodea", "master", check=0)
    world.crash("nodeb")
    world.set_hast(r, dirty=4 << 20)
    p = c.hh("nodea", "status")
    assert p.returncode == 1 and p.stdout.startswith("WARNING"), p.stdout
    assert "degraded" in p.stdout and "dirty 4.0MB" in p.stdout
    c.assert_no_violations()


def test_init_after_boot_is_broken_and_slave_sets_secondary(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8, roles={"nodea": "init", "nodeb": "init"})
    c = make(tmp_path, world, [r])
    p = c.hh("nodeb", "status")
    assert p.returncode == 2 and "role init" in p.stdout, p.stdout
    c.hh("nodeb", "slave", check=0)
    assert world.hast_role(r, "nodeb") == "secondary"
    c.hh("nodea", "master", check=0)          # from init straight to primary
    assert world.hast_role(r, "nodea") == "primary"
    c.assert_no_violations()


def test_all_resources(tmp_path, world):
    names = [unique(), unique(), unique()]
    for r in names:
        world.add_hast(r, size_mb=8)
    c = make(tmp_path, world, "all")
    c.hh("nodea", "master", check=0)
    assert all(world.hast_role(r, "nodea") == "primary" for r in names)
    assert ["hastctl", "role", "primary", "all"] in c.commands("nodea", "hastctl")
    c.hh("nodea", "slave", check=0)
    assert all(world.hast_role(r, "nodea") == "secondary" for r in names)
    c.assert_no_violations()


def test_all_must_stand_alone(tmp_path, world):
    c = make(tmp_path, world, ["all", "r1"])
    p = c.hh("nodea", "check")
    assert p.returncode == 6 and "nodea.toml:" in p.stderr and '"all" stands alone' in p.stderr


def test_hastd_down_is_critical_and_master_fails_cleanly(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8)
    c = make(tmp_path, world, [r])
    world.stop_hastd("nodea")
    p = c.hh("nodea", "status")
    assert p.returncode == 2 and "Unable to connect to hastd" in p.stdout, p.stdout
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "Unable to connect to hastd" in p.stderr
    c.assert_no_violations()


def test_dry_run_changes_nothing(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8)
    c = make(tmp_path, world, [r])
    p = c.hh("nodea", "master", "--dry-run", check=0)
    assert f"would run: hastctl role primary {r}" in p.stdout
    assert world.hast_role(r, "nodea") == "secondary"


def test_release_refused_while_mounted(tmp_path, sandbox):
    require_tool("mkfs.ext4")
    world, lab = sandbox                    # the mount lives in nodea's own namespace
    r = unique()
    world.add_hast(r, size_mb=16)
    c = make(tmp_path, world, [r], lab=lab)
    c.hh("nodea", "master", check=0)
    dev = c.dev("nodea", "hast", r)
    with mounted_in(c, "nodea", dev, tmp_path / "mnt") as mnt:
        p = c.hh("nodea", "slave")
        assert p.returncode == 1 and f"{dev} is mounted at {mnt}" in p.stderr, p.stderr
        assert world.hast_role(r, "nodea") == "primary"
        assert c.run("nodea", "test", "-e", dev).returncode == 0   # in nodea's blockio mount
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


def test_without_list_falls_back_to_status(tmp_path, world):
    # FreeBSD 9.0's hastctl has no `list` (usage, exit 64): the terse/verbose status is read
    r = unique()
    world.add_hast(r, size_mb=8)
    world.inject("hastctl list*", fail=64, stderr="usage: hastctl ...\n")
    c = make(tmp_path, world, [r])
    c.hh("nodea", "master", check=0)
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and f"primary: {r} (complete)" in st.stdout, st.stdout
    assert ["hastctl", "status", r] in c.commands("nodea", "hastctl")
    c.hh("nodea", "slave", check=0)
    assert world.hast_role(r, "nodea") == "secondary"
    c.assert_no_violations()
