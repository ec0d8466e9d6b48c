"""Simulated drbdadm/drbdsetup (DRBD 8.4 kernel + drbd-utils 9) against docs/reference/drbd.md §1 and
LINBIT/drbd-utils user/v84/drbdsetup.c (print_config_error, role_scmd, status_cmd)."""
from __future__ import annotations

import os

import pytest

from test_sim_support import make_world


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.close()


def run(world, node, *argv):
    return world.run(node, "drbdadm", *argv)


def test_role_cstate_dstate_formats_reference_3_drbddisk_status(world):
    """docs/reference/drbd.md §4: drbddisk status reads `drbdadm role` (`Primary/Secondary`, ROLE is
    the part before the slash); cstate and dstate print `Connected`, `UpToDate/UpToDate`."""
    world.add_drbd("r0", primary="nodea")
    assert run(world, "nodea", "role", "r0").stdout == "Primary/Secondary\n"
    assert run(world, "nodeb", "role", "r0").stdout == "Secondary/Primary\n"
    assert run(world, "nodea", "cstate", "r0").stdout == "Connected\n"
    assert run(world, "nodea", "dstate", "r0").stdout == "UpToDate/UpToDate\n"
    world.crash("nodeb")
    assert run(world, "nodea", "role", "r0").stdout == "Primary/Unknown\n"
    assert run(world, "nodea", "cstate", "r0").stdout == "WFConnection\n"
    assert run(world, "nodea", "dstate", "r0").stdout == "UpToDate/DUnknown\n"


def test_status_format_connected_and_disconnected(world):
    """drbdsetup-84 status_cmd(): 8.4 states in DRBD 9 words, a blank line after each."""
    world.add_drbd("r0", primary="nodea")
    assert run(world, "nodea", "status", "r0").stdout == (
        "r0 role:Primary\n"
        "  disk:UpToDate\n"
        "  peer role:Secondary\n"
        "    replication:Established peer-disk:UpToDate\n"
        "\n")
    world.partition("nodea", "nodeb")
    assert run(world, "nodea", "status").stdout == (
        "r0 role:Primary\n"
        "  disk:UpToDate\n"
        "  peer connection:Connecting\n"
        "\n")


def test_primary_refused_while_peer_primary_exit_11(world):
    """docs/reference/drbd.md §1: promotion must be refused while the peer is Primary: SS_TWO_PRIMARIES (-1),
    drbdsetup exit 11, drbdadm adds its `Command '...' terminated` line."""
    world.add_drbd("r0", primary="nodea")
    r = run(world, "nodeb", "primary", "r0")
    assert (r.returncode, r.stdout) == (11, "")
    assert r.stderr == ("0: State change failed: (-1) Multiple primaries not allowed by config\n"
                        "Command 'drbdsetup-84 primary 0' terminated with exit code 11\n")
    assert run(world, "nodeb", "role", "r0").stdout == "Secondary/Primary\n"
    assert world.violations() == []


def test_primary_refused_without_uptodate_data_exit_17(world):
    """docs/reference/drbd.md §5 ocf:linbit:drbd: exit 17 is `Refusing to be promoted to Primary without access to
    UpToDate data` (SS_NO_UP_TO_DATE_DISK). --force overrides it."""
    world.add_drbd("r0")
    world.crash("nodea")
    world.set_drbd("r0", "nodeb", disk="Outdated")
    r = run(world, "nodeb", "primary", "r0")
    assert r.returncode == 17
    assert r.stderr == ("0: State change failed: (-2) Need access to UpToDate data\n"
                        "Command 'drbdsetup-84 primary 0' terminated with exit code 17\n")
    assert not os.path.exists(os.path.join(world.dev_dir("nodeb"), "drbd0"))
    r = run(world, "nodeb", "primary", "--force", "r0")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(world.dev_dir("nodeb"), "drbd0"))


def test_survivor_of_a_crash_promotes(world):
    """After the Primary dies, the connected Secondary still has UpToDate data and promotes;
    the device is the same bytes."""
    image = world.add_drbd("r0", primary="nodea")
    with open(os.path.join(world.dev_dir("nodea"), "drbd0"), "r+b") as f:
        f.write(b"acknowledged")
    world.crash("nodea")
    assert run(world, "nodeb", "primary", "r0").returncode == 0
    with open(os.path.join(world.dev_dir("nodeb"), "drbd0"), "rb") as f:
        assert f.read(12) == b"acknowledged"
    assert os.path.samefile(os.path.join(world.dev_dir("nodeb"), "drbd0"), image)
    assert world.violations() == []


def test_secondary_refused_while_device_open_exit_11(world):
    """Unlike HAST, DRBD refuses to demote a device in use: SS_DEVICE_IN_USE (-12)."""
    world.add_drbd("r0", primary="nodea")
    with open(os.path.join(world.dev_dir("nodea"), "drbd0"), "rb"):
        r = run(world, "nodea", "secondary", "r0")
    assert r.returncode == 11
    assert r.stderr == ("0: State change failed: (-12) Device is held open by someone\n"
                        "Command 'drbdsetup-84 secondary 0' terminated with exit code 11\n")
    assert run(world, "nodea", "secondary", "r0").returncode == 0
    assert run(world, "nodea", "role", "r0").stdout == "Secondary/Secondary\n"


def test_unknown_and_down_resources(world):
    world.add_drbd("r0")
    r = run(world, "nodea", "role", "r9")
    assert (r.returncode, r.stderr) == (1, "'r9' not defined in your config (for this host).\n")
    assert run(world, "nodea", "down", "r0").returncode == 0
    r = run(world, "nodea", "role", "r0")
    assert r.returncode == 10
    assert r.stderr == ("0: Failure: (127) Device minor not allocated\n"
                        "additional info from kernel:\nunknown minor\n"
                        "Command 'drbdsetup-84 role 0' terminated with exit code 10\n")
    r = run(world, "nodea", "status", "r0")
    assert (r.returncode, r.stderr) == (10, "r0: No such resource\nCommand 'drbdsetup-84 "
                                            "status r0' terminated with exit code 10\n")
    assert run(world, "nodea", "up", "r0").returncode == 0
    assert run(world, "nodea", "cstate", "r0").stdout == "Connected\n"


def test_partition_double_primary_and_split_brain_recorded(world):
    """Both promoted while disconnected: recorded; on reconnect both go StandAlone."""
    world.add_drbd("r0", primary="nodea")
    world.partition("nodea", "nodeb")
    assert run(world, "nodeb", "primary", "r0").returncode == 0   # DRBD cannot know
    world.heal("nodea", "nodeb")
    assert run(world, "nodea", "cstate", "r0").stdout == "StandAlone\n"
    kinds = [v["kind"] for v in world.violations()]
    assert kinds == ["two_drbd_primaries", "drbd_split_brain"]


def test_reconnect_after_crash_resyncs_the_returning_node(world):
    world.configure(drbd_sync_rate=1)        # a resync that lasts
    world.add_drbd("r0", primary="nodea")
    world.crash("nodea")
    assert run(world, "nodeb", "primary", "r0").returncode == 0
    world.restart("nodea")
    assert run(world, "nodea", "up", "r0").returncode == 0
    assert run(world, "nodea", "dstate", "r0").stdout == "Inconsistent/UpToDate\n"
    assert run(world, "nodea", "cstate", "r0").stdout == "SyncTarget\n"
    r = run(world, "nodea", "primary", "r0")
    assert r.returncode == 11      # the peer is Primary
    assert world.violations() == []
