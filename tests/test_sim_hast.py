"""Simulated hastctl/hastd against docs/reference/hast.md §2 (formats) and §3–§5 (semantics)."""
from __future__ import annotations

import os
import subprocess

import pytest

from hahooks import waits
from hahooks.errors import WaitTimeout
from test_sim_support import make_world, titles


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path, nodea="10.0.0.1", nodeb="10.0.0.2")
    yield w
    w.close()


def test_status_format_matches_reference_2_hastctl_status(world):
    """docs/reference/hast.md §2 `hastctl status`: the terse table, character for character."""
    world.add_hast("disk1", nodes=("nodea", "nodeb"), primary="nodea")
    world.add_hast("disk2", nodes=("nodea", "nodeb"), roles={"nodea": "init"})
    r = world.run("nodea", "hastctl", "status")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("Name\tStatus\t Role\t\tComponents\n"
                        "disk1\tcomplete primary        /dev/ada1\t10.0.0.2\n"
                        "disk2\t-        init           /dev/ada2\t10.0.0.2\n")


def test_status_unknown_resource_reference_2_err_line(world):
    """docs/reference/hast.md §2: a resource with an error prints `name\\tERR<n>`; exit code is the error (1)."""
    world.add_hast("disk1")
    r = world.run("nodea", "hastctl", "status", "disk1", "nosuch")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "Name\tStatus\t Role\t\tComponents"
    assert r.stdout.splitlines()[2] == "nosuch\tERR1"


def test_list_format_matches_reference_2_hastctl_list(world):
    """docs/reference/hast.md §2 `hastctl list` (modern, with workerpid and queues); unknown -> `  error: 1`."""
    world.add_hast("disk1", primary="nodea")
    r = world.run("nodea", "hastctl", "list", "disk1", "nosuch")
    assert r.returncode == 1
    pid = world.state()["nodes"]["nodea"]["hastd_workers"]["disk1"]["pid"]
    assert r.stdout == (
        "disk1:\n"
        "  role: primary\n"
        "  provname: disk1\n"
        "  localpath: /dev/ada1\n"
        "  extentsize: 2097152 (2.0MB)\n"
        "  keepdirty: 64\n"
        "  remoteaddr: 10.0.0.2\n"
        "  replication: memsync\n"
        "  status: complete\n"
        f"  workerpid: {pid}\n"
        "  dirty: 0 (0B)\n"
        "  statistics:\n"
        "    reads: 0\n"
        "    writes: 0\n"
        "    deletes: 0\n"
        "    flushes: 0\n"
        "    activemap updates: 0\n"
        "    local errors: read: 0, write: 0, delete: 0, flush: 0\n"
        "    queues: local: 0, send: 0, recv: 0, done: 0, idle: 255\n"
        "nosuch:\n"
        "  error: 1\n")


def test_list_init_resource_has_no_status_line_reference_2(world):
    """docs/reference/hast.md §2 field sources: an init resource has no worker, so no status, workerpid or dirty."""
    world.add_hast("disk1", roles={"nodea": "init", "nodeb": "init"})
    out = world.run("nodea", "hastctl", "list").stdout
    assert "  status:" not in out and "workerpid" not in out
    assert "  extentsize: 0 (0B)\n" in out and "  dirty: 0 (0B)\n" in out


def test_dirty_bytes_humanized_reference_2_percent_NB(world):
    """docs/reference/hast.md §2 `%NB`: humanize_number(5, HN_AUTOSCALE, HN_NOSPACE|HN_DECIMAL) + 'B' -> 128MB."""
    world.add_hast("disk1", primary="nodea")
    world.partition("nodea", "nodeb")
    world.set_hast("disk1", dirty=128 << 20)
    out = world.run("nodea", "hastctl", "list", "disk1").stdout
    assert "  status: degraded\n" in out
    assert f"  dirty: {128 << 20} (128MB)\n" in out
    status = world.run("nodea", "hastctl", "status", "disk1").stdout
    assert status.splitlines()[1] == "disk1\tdegraded primary        /dev/ada1\t10.0.0.2"


def test_usage_exit_64_reference_2_usage_text(world):
    """docs/reference/hast.md §1 usage text on stderr, exit EX_USAGE (64): no args, bad verb, bad role, no names."""
    expected = ("usage: hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty]\n"
                "\t\t[-m mediasize] name ...\n"
                "       hastctl role [-d] [-c config] <init | primary | secondary> all | name ...\n"
                "       hastctl list [-d] [-c config] [all | name ...]\n"
                "       hastctl status [-d] [-c config] [all | name ...]\n"
                "       hastctl dump [-d] [-c config] [all | name ...]\n")
    for argv in ([], ["frobnicate"], ["role", "master", "r0"], ["role", "primary"]):
        r = world.run("nodea", "hastctl", *argv)
        assert (r.returncode, r.stdout, r.stderr) == (64, "", expected), argv
    r = world.run("nodea", "hastctl", "status", "-x")
    assert r.returncode == 64 and r.stderr.startswith("hastctl: illegal option -- x\nusage:")


def test_unknown_resource_role_exit_1_reference_2(world):
    """docs/reference/hast.md §1: `[WARNING] [name] Received error 1 from hastd.`, exit 1 (EHAST_NOENTRY)."""
    world.add_hast("r0")
    r = world.run("nodea", "hastctl", "role", "primary", "nosuch")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", "[WARNING] [nosuch] Received error 1 from hastd.\n")


def test_hastd_not_running_exit_71_reference_2(world):
    """docs/reference/hast.md §1: cannot reach hastd -> `[ERROR] Unable to connect to hastd via uds:///var/run/hastctl:
    <strerror>.`, exit EX_OSERR (71)."""
    world.add_hast("r0")
    world.stop_hastd("nodea")
    r = world.run("nodea", "hastctl", "status")
    assert r.returncode == 71
    assert r.stderr == ("[ERROR] Unable to connect to hastd via uds:///var/run/hastctl: "
                        "No such file or directory.\n")


def test_role_primary_returns_before_device_exists_reference_2(world):
    """docs/reference/hast.md §3 Role semantics: for primary hastd forks the worker and returns at once; the
    device appears asynchronously (here after hast_device_delay)."""
    world.configure(hast_device_delay=0.5)
    world.add_hast("r0")
    device = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(device)
    waits.wait_for_path(device, 5)
    with open(device, "rb") as f:      # a real file with the resource's size
        f.seek(0, 2)
        assert f.tell() == 64 << 20
    assert "hastd: r0 (primary)" in titles()
    assert world.violations() == []


def test_secondary_worker_title_and_exit_reference_2_process_titles(world):
    """docs/reference/hast.md §5 Process titles: while the peer is primary and connected this node has a process
    whose joined cmdline is exactly `hastd: r0 (secondary)`; it exits only after the peer
    leaves primary. pgrep -f as the seed scripts use it finds it."""
    world.add_hast("r0")
    assert "hastd: r0 (secondary)" not in titles()
    assert world.run("nodeb", "hastctl", "role", "primary", "r0").returncode == 0
    waits.wait_for(lambda: "hastd: r0 (secondary)" in titles(), 5, "secondary worker")
    pgrep = subprocess.run(["pgrep", "-f", r"hastd: r0 \(secondary\)"], capture_output=True)
    assert pgrep.returncode == 0
    import psutil
    pid = int(pgrep.stdout.split()[0])
    assert " ".join(psutil.Process(pid).cmdline()) == "hastd: r0 (secondary)"
    assert world.run("nodeb", "hastctl", "role", "secondary", "r0").returncode == 0
    waits.wait_for(lambda: "hastd: r0 (secondary)" not in titles(), 5, "worker exit")
    assert world.violations() == []


def test_primary_beside_connected_primary_waits_for_it_reference_7_6(world):
    """docs/reference/hast.md §4: `hastctl role primary` exits 0 while the connected peer is still primary; the
    new worker waits for the peer to become secondary ("Waiting for remote node to become
    secondary for 20s.") and only then starts: its device appears after the peer left, and
    no two primaries ever ran."""
    world.configure(hast_device_delay=0.0)
    world.add_hast("r0", primary="nodeb")
    dev = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")
    assert r.returncode == 0
    assert world.state()["hast"]["r0"]["role"] == {"nodea": "primary", "nodeb": "primary"}
    with pytest.raises(WaitTimeout):     # held back while nodeb is primary
        waits.wait_for(lambda: os.path.exists(dev), 0.5, "nodea's device")
    assert world.run("nodeb", "hastctl", "role", "secondary", "r0").returncode == 0
    waits.wait_for(lambda: os.path.exists(dev), 5, "nodea's device after nodeb left")
    assert world.violations() == []


def test_primary_starts_anyway_after_the_wait_reference_7_6(world):
    """docs/reference/hast.md §4: when the peer is still primary after the wait, "Remote node is still primary,
    starting anyway.": both run primary, and the simulator records the split brain."""
    world.configure(hast_device_delay=0.0, hast_peer_primary_wait=0.3)
    world.add_hast("r0", primary="nodeb")
    assert world.run("nodea", "hastctl", "role", "primary", "r0").returncode == 0
    dev = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    waits.wait_for(lambda: os.path.exists(dev), 5, "nodea's device after the wait")
    assert [v["kind"] for v in world.violations()] == ["two_hast_primaries"]
    assert "anyway" in world.violations()[0]["detail"]


def test_primary_beside_unconnected_primary_is_a_split_brain_reference_7_6(world):
    """docs/reference/hast.md §4: with the link cut nobody answers "acts as primary": this node starts primary at
    once beside the other, exit 0; the simulator records the split brain at once."""
    world.add_hast("r0", primary="nodeb")
    world.partition("nodea", "nodeb")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")
    assert r.returncode == 0
    assert world.state()["hast"]["r0"]["role"] == {"nodea": "primary", "nodeb": "primary"}
    kinds = [v["kind"] for v in world.violations()]
    assert kinds == ["two_hast_primaries"]
