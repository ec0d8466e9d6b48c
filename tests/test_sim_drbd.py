"""Simulated drbdadm/drbdsetup (DRBD 8.4 or 9 kernel + drbd-utils 9) against docs/reference/drbd.md §1,
docs/reference/drbd.md and LINBIT/drbd-utils user/v84/drbdsetup.c (print_config_error,
role_scmd, status_cmd), user/v9/drbdsetup.c (role_cmd, cstate_cmd, dstate_cmd, status_cmd)."""
from __future__ import annotations

import os

import pytest

from test_sim_support import make_world


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.close()


@pytest.fixture
def world9(world):
    world.configure(drbd_version="9")
    return world


def dev(world, node, minor=0):
    return os.path.join(world.dev_dir(node), f"drbd{minor}")


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
    assert run(world, "nodeb", "role", "r0").stdout == "Secondary/Unknown\n"
    r = run(world, "nodeb", "primary", "--force", "r0")
    assert r.returncode == 0, r.stderr
    assert run(world, "nodeb", "role", "r0").stdout == "Primary/Unknown\n"


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


# -- the device node: present while up, whatever the role ---------------------------------
@pytest.mark.parametrize("version", ["8.4", "9"])
def test_device_exists_while_up_on_a_secondary_too_new_minor_on_up(world, version):
    """DRBD creates /dev/drbdN when the resource comes up (drbdadm up -> drbdsetup
    new-minor, user/v9/drbdadm_main.c adm_up()) and removes it on down: a Secondary has it
    too (its opens fail in the kernel, drbd_open(), not by a missing node)."""
    world.configure(drbd_version=version)
    world.add_drbd("r0", primary="nodea")
    assert os.path.exists(dev(world, "nodea")) and os.path.exists(dev(world, "nodeb"))
    assert run(world, "nodea", "secondary", "r0").returncode == 0
    assert os.path.exists(dev(world, "nodea"))            # demoted, still up
    assert run(world, "nodeb", "down", "r0").returncode == 0
    assert not os.path.exists(dev(world, "nodeb"))
    assert run(world, "nodeb", "up", "r0").returncode == 0
    assert os.path.exists(dev(world, "nodeb"))
    world.crash("nodea")
    assert not os.path.exists(dev(world, "nodea"))        # its kernel is gone


# -- DRBD 9 output (user/v9/drbdsetup.c) ----------------------------------------------------
def test_drbd9_role_prints_the_local_role_only_role_cmd(world9):
    """user/v9/drbdsetup.c role_cmd(): printf("%s\\n", drbd_role_str(res_role)): no peer."""
    world9.add_drbd("r0", primary="nodea")
    assert run(world9, "nodea", "role", "r0").stdout == "Primary\n"
    assert run(world9, "nodeb", "role", "r0").stdout == "Secondary\n"
    world9.crash("nodea")
    assert run(world9, "nodeb", "role", "r0").stdout == "Secondary\n"


def test_drbd9_cstate_is_the_connection_state_dstate_keeps_the_pair(world9):
    """user/v9/drbdsetup.c cstate_cmd(): the connection state (Connected, Connecting,
    StandAlone), never a replication state such as SyncSource; dstate_cmd() "Local/Peer"."""
    world9.configure(drbd_sync_rate=1)                   # a resync that lasts
    world9.add_drbd("r0", primary="nodea")
    assert run(world9, "nodeb", "cstate", "r0").stdout == "Connected\n"
    assert run(world9, "nodeb", "dstate", "r0").stdout == "UpToDate/UpToDate\n"
    world9.crash("nodeb")
    assert run(world9, "nodea", "cstate", "r0").stdout == "Connecting\n"
    assert run(world9, "nodea", "dstate", "r0").stdout == "UpToDate/DUnknown\n"
    world9.restart("nodeb")
    assert run(world9, "nodeb", "up", "r0").returncode == 0
    assert run(world9, "nodea", "cstate", "r0").stdout == "Connected\n"   # SyncSource on 8.4
    assert run(world9, "nodea", "disconnect", "r0").returncode == 0
    assert run(world9, "nodea", "cstate", "r0").stdout == "StandAlone\n"


def test_drbd9_status_names_the_peer_host_and_omits_established(world9):
    """user/v9/drbdsetup.c status_cmd(): the connection is named after the peer's host
    (drbdadm_postparse.c create_implicit_net_options() `_name`); connection_status() prints
    "role:" only while Connected, "connection:" otherwise; peer_device_status() prints
    "replication:" only above Established; device_status() "open:"."""
    world9.add_drbd("r0", primary="nodea")

    def secondary_with(*connection: str) -> str:
        head = ["r0 role:Secondary", "  disk:UpToDate open:no"]
        return "".join(line + "\n" for line in head + list(connection)) + "\n"

    status = lambda: run(world9, "nodeb", "status", "r0").stdout  # noqa: E731
    assert status() == secondary_with("  nodea role:Primary", "    peer-disk:UpToDate")
    world9.partition("nodea", "nodeb")
    assert status() == secondary_with("  nodea connection:Connecting")
    assert run(world9, "nodeb", "disconnect", "r0").returncode == 0
    assert status() == secondary_with("  nodea connection:StandAlone")


def test_drbd9_status_during_a_resync_shows_replication_and_done(world9):
    """peer_device_status(): repl_state > L_ESTABLISHED prints "replication:SyncSource", and
    a resync prints "done:"; the device is open while mounted/held (open:yes)."""
    world9.configure(drbd_sync_rate=1)
    world9.add_drbd("r0", primary="nodea")
    world9.crash("nodeb")
    world9.restart("nodeb")
    assert run(world9, "nodeb", "up", "r0").returncode == 0
    with open(dev(world9, "nodea"), "rb"):
        out = run(world9, "nodea", "status", "r0").stdout
    lines = out.splitlines()
    assert lines[:3] == ["r0 role:Primary", "  disk:UpToDate open:yes", "  nodeb role:Secondary"]
    assert lines[3].startswith("    replication:SyncSource peer-disk:Inconsistent done:")


def test_drbd9_status_verbose_wraps_at_80_columns(world9):
    """drbdadm passes --verbose on (__adm_drbdsetup()); status_cmd() then prints every
    field, and user/shared/wrap_printf.c breaks lines past column 80 with the caller's
    indentation."""
    world9.add_drbd("r0", primary="nodea")
    out = run(world9, "nodea", "status", "--verbose", "r0").stdout
    lines = out.splitlines()
    assert lines[0] == "r0 node-id:0 role:Primary suspended:no force-io-failures:no"
    # the image path is long (under pytest's tmp dir): backing_dev goes to its own line
    assert lines[1] == "  volume:0 minor:0 disk:UpToDate"
    assert lines[2].startswith("      backing_dev:") and lines[2].endswith("drbd-r0.img")
    assert lines[3] == "      quorum:yes open:no blocked:no"
    i = lines.index("  nodeb node-id:1 connection:Connected role:Secondary tls:no congested:no")
    assert lines[i + 1] == "      ap-in-flight:0 rs-in-flight:0"
    assert "    volume:0 replication:Established peer-disk:UpToDate resync-suspended:no" in lines
    # a piece never splits (the path alone may pass 80); upstream counts an indented line
    # one short (col = -1 after the indentation), hence 81
    assert all(len(line) <= 81 for n, line in enumerate(lines) if n != 2), lines
    assert out.endswith("\n\n")


def test_drbd9_state_change_errors_name_the_resource_print_config_error(world9):
    """user/v9/drbdsetup.c print_config_error(): primary/secondary are per resource on 9,
    so the object is the name; drbdadm reports `drbdsetup primary r0`."""
    world9.add_drbd("r0", primary="nodea")
    r = run(world9, "nodeb", "primary", "r0")
    assert r.returncode == 11
    assert r.stderr == ("r0: State change failed: (-1) Multiple primaries not allowed by config\n"
                        "Command 'drbdsetup primary r0' terminated with exit code 11\n")
    with open(dev(world9, "nodea"), "rb"):
        r = run(world9, "nodea", "secondary", "r0")
    assert r.returncode == 11
    assert r.stderr == ("r0: State change failed: (-12) Device is held open by someone\n"
                        "Command 'drbdsetup secondary r0' terminated with exit code 11\n")


def test_drbd9_down_resource_role_unknown_status_no_such_resource(world9):
    """user/v9/drbdsetup.c role_cmd(): "<res>: Unknown resource" (ERR_RES_NOT_KNOWN),
    status_cmd(): "<res>: No such resource", cstate_cmd(): "No such connection"; exit 10."""
    world9.add_drbd("r0", up=False)
    r = run(world9, "nodea", "role", "r0")
    assert (r.returncode, r.stdout) == (10, "")
    assert r.stderr == ("r0: Unknown resource\n"
                        "Command 'drbdsetup role r0' terminated with exit code 10\n")
    r = run(world9, "nodea", "status", "r0")
    assert r.stderr == ("r0: No such resource\n"
                        "Command 'drbdsetup status r0' terminated with exit code 10\n")
    r = run(world9, "nodea", "cstate", "r0")
    assert r.stderr == ("r0: No such connection\n"
                        "Command 'drbdsetup cstate r0 1' terminated with exit code 10\n")
