"""Simulated hastctl/hastd against docs/reference/hast.md §2 (formats) and §3–§5 (semantics)."""
from __future__ import annotations

import errno
import os
import subprocess
import threading
import time

import pytest

from hahooks import waits
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


class BlockedRead:
    """A read(2) of the device in a thread: `blocked()` while it has not returned."""

    def __init__(self, device: str):
        self.result: list = []
        self.fd = os.open(device, os.O_RDONLY)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            self.result.append(os.pread(self.fd, 4096, 0))
        except OSError as exc:
            self.result.append(exc)

    def blocked(self, grace: float = 0.3) -> bool:
        self.thread.join(grace)
        return self.thread.is_alive()

    def finish(self, timeout: float = 10.0):
        self.thread.join(timeout)
        os.close(self.fd)
        assert not self.thread.is_alive(), "the read never returned"
        return self.result[0]


def hastd_log(world, node: str) -> str:
    try:
        with open(os.path.join(world.root, "nodes", node, "run", "hastd.log")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def hast_status(world, node: str, name: str) -> str:
    out = world.run(node, "hastctl", "list", name).stdout
    return next((line.split(": ", 1)[1] for line in out.splitlines()
                 if line.startswith("  status: ")), "")


def test_new_primary_is_complete_only_after_device_and_peer_handshake_primary_c(world):
    """control.c: `complete` iff both remote connections exist; primary.c hastd_primary()
    makes them in init_remote(), after init_ggate() made the device and once a peer acting
    as primary stepped down. So `complete` is never seen before /dev/hast/r0 exists, nor
    while the worker waits for a primary peer (docs/reference/hast.md §2, §4)."""
    world.configure(hast_device_delay=1.0)
    world.add_hast("r1")                         # both secondary: the handshake succeeds
    assert world.run("nodea", "hastctl", "role", "primary", "r1").returncode == 0
    assert not os.path.exists(os.path.join(world.dev_dir("nodea"), "hast", "r1"))
    assert hast_status(world, "nodea", "r1") == "degraded"      # init_ggate() not done yet
    waits.wait_for(lambda: hast_status(world, "nodea", "r1") == "complete", 5, "complete")
    assert os.path.exists(os.path.join(world.dev_dir("nodea"), "hast", "r1"))

    world.add_hast("r0", primary="nodeb")
    dev = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    assert world.run("nodea", "hastctl", "role", "primary", "r0").returncode == 0
    assert not os.path.exists(dev)
    assert hast_status(world, "nodea", "r0") == "degraded"      # no device, no handshake
    waits.wait_for_path(dev, 5)
    assert hast_status(world, "nodea", "r0") == "degraded"      # waiting: nodeb is primary
    assert world.run("nodeb", "hastctl", "role", "secondary", "r0").returncode == 0
    waits.wait_for(lambda: hast_status(world, "nodea", "r0") == "complete", 5, "complete")
    assert world.violations() == []


def test_new_primary_device_exists_at_once_io_stalls_while_peer_primary_primary_c(world):
    """sbin/hastd/primary.c hastd_primary(): init_ggate() runs before init_remote(), so
    /dev/hast/r0 exists at once; the connected peer answers "acts as primary" with the wait
    flag and the worker logs "Waiting for remote node to become secondary for 20s." while
    reads block; once the peer steps down they go on, and no two primaries ever ran."""
    world.configure(hast_device_delay=0.0)
    world.add_hast("r0", primary="nodeb")
    dev = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    assert world.run("nodea", "hastctl", "role", "primary", "r0").returncode == 0
    assert world.state()["hast"]["r0"]["role"] == {"nodea": "primary", "nodeb": "primary"}
    waits.wait_for_path(dev, 5)
    read = BlockedRead(dev)
    assert read.blocked(), "I/O must wait while nodeb is primary"
    assert "[r0] (primary) Waiting for remote node to become secondary for 20s." \
        in hastd_log(world, "nodea")
    assert world.run("nodeb", "hastctl", "role", "secondary", "r0").returncode == 0
    assert len(read.finish()) == 4096
    assert world.violations() == []


def test_io_stalls_for_timeout_then_primary_starts_anyway_primary_c(world):
    """primary.c hastd_primary(): when the peer is still primary after `timeout`, "Remote
    node is still primary, starting anyway.": the stalled read goes on and both run primary,
    which the simulator records as two_hast_primaries."""
    world.configure(hast_device_delay=0.0, hast_peer_primary_wait=2.0)
    world.add_hast("r0", primary="nodeb")
    assert world.run("nodea", "hastctl", "role", "primary", "r0").returncode == 0
    dev = waits.wait_for_path(os.path.join(world.dev_dir("nodea"), "hast", "r0"), 5)
    read = BlockedRead(dev)
    assert read.blocked() and world.violations() == []
    assert len(read.finish()) == 4096
    assert [v["kind"] for v in world.violations()] == ["two_hast_primaries"]
    assert "anyway" in world.violations()[0]["detail"]
    assert "[r0] (primary) Remote node is still primary, starting anyway." \
        in hastd_log(world, "nodea")


def test_peer_down_without_reset_stalls_io_until_connect_timeout_primary_c(world):
    """primary.c init_remote() -> proto_connect_wait(conn, hr_timeout): a crashed peer sends
    no RST, so the new primary's device exists but its I/O stalls up to `timeout`; then it
    runs degraded (a dead peer is no second primary: no violation)."""
    world.configure(hast_device_delay=0.0, hast_peer_primary_wait=2.0)
    world.add_hast("r0", primary="nodeb")
    world.crash("nodeb")
    assert world.run("nodea", "hastctl", "role", "primary", "r0").returncode == 0
    dev = waits.wait_for_path(os.path.join(world.dev_dir("nodea"), "hast", "r0"), 5)
    read = BlockedRead(dev)
    assert read.blocked(), "I/O must wait while the connect to the dead peer times out"
    assert len(read.finish()) == 4096
    assert "[r0] (primary) Unable to connect to 10.0.0.2: Operation timed out." \
        in hastd_log(world, "nodea")
    assert world.run("nodea", "hastctl", "status", "r0").stdout.splitlines()[1].split()[1] \
        == "degraded"
    assert world.violations() == []


def test_partitioned_primary_peer_stalls_io_then_two_primaries_primary_c(world):
    """primary.c: with the link cut (no RST) the connect waits `timeout` too; `hastctl role
    primary` exits 0 at once, I/O stalls, and when the worker starts degraded beside the
    still-primary peer the split brain is recorded (not before)."""
    world.configure(hast_device_delay=0.0, hast_peer_primary_wait=2.0)
    world.add_hast("r0", primary="nodeb")
    world.partition("nodea", "nodeb")
    r = world.run("nodea", "hastctl", "role", "primary", "r0")
    assert r.returncode == 0
    assert world.state()["hast"]["r0"]["role"] == {"nodea": "primary", "nodeb": "primary"}
    dev = waits.wait_for_path(os.path.join(world.dev_dir("nodea"), "hast", "r0"), 5)
    read = BlockedRead(dev)
    assert read.blocked() and world.violations() == []
    read.finish()
    assert [v["kind"] for v in world.violations()] == ["two_hast_primaries"]


def test_destroyed_device_fails_open_handles_with_enxio(world):
    """A role change destroys the provider (gctl_force): a handle opened before gets ENXIO,
    like a withered GEOM provider; nothing was mounted, so no violation."""
    world.configure(hast_device_delay=0.0)
    world.add_hast("r0", primary="nodea")
    dev = os.path.join(world.dev_dir("nodea"), "hast", "r0")
    fd = os.open(dev, os.O_RDONLY)
    try:
        assert len(os.pread(fd, 512, 0)) == 512
        assert world.run("nodea", "hastctl", "role", "secondary", "r0").returncode == 0
        with pytest.raises(OSError) as exc:
            os.pread(fd, 512, 0)
        assert exc.value.errno == errno.ENXIO
    finally:
        os.close(fd)
    assert not os.path.exists(dev)


@pytest.mark.parametrize("cut", ["crash", "partition"])
def test_secondary_worker_outlives_lost_primary_by_2_keepalive_secondary_c(world, cut):
    """sbin/hastd/secondary.c: proto_timeout(hr_remotein, 2 * HAST_KEEPALIVE): a primary that
    crashes or is cut off sends nothing, so `hastd: r0 (secondary)` runs on until the receive
    timeout (hast_secondary_timeout, 20 s) expires; its exit is no proof of a clean step-down."""
    assert world.state()["settings"]["hast_secondary_timeout"] == 20.0
    world.configure(hast_secondary_timeout=3.0)
    world.add_hast("r0", primary="nodeb")
    waits.wait_for(lambda: "hastd: r0 (secondary)" in titles(), 5, "secondary worker")
    if cut == "crash":
        world.crash("nodeb")
    else:
        world.partition("nodea", "nodeb")
    time.sleep(0.5)
    assert "hastd: r0 (secondary)" in titles(), "gone before the receive timeout"
    waits.wait_for(lambda: "hastd: r0 (secondary)" not in titles(), 10, "worker timeout")


def test_secondary_worker_ends_at_once_on_clean_role_change_secondary_c(world):
    """A clean `role secondary` on the primary tells the secondary at once (no timeout)."""
    world.configure(hast_secondary_timeout=60.0)
    world.add_hast("r0", primary="nodeb")
    waits.wait_for(lambda: "hastd: r0 (secondary)" in titles(), 5, "secondary worker")
    assert world.run("nodeb", "hastctl", "role", "secondary", "r0").returncode == 0
    waits.wait_for(lambda: "hastd: r0 (secondary)" not in titles(), 5, "worker exit")
