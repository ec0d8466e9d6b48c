"""A ggate server that goes away, as upstream behaves (docs/reference/ggate.md §4): ggatec
reconnects for ever (sbin/ggate/ggatec/ggatec.c g_gatec_loop()); with the default `-t 0`
its queued requests never fail, so a write on the client's mirror blocks and gmirror keeps
the component; with `-t N` the guard (sys/geom/gate/g_gate.c g_gate_guard()) fails them with
EIO and gmirror disconnects the component (sys/geom/mirror/g_mirror.c
g_mirror_regular_request_error()). Each test failed on the simulator before this behaviour."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hahooks import waits
from test_sim_support import make_world

SERVER = "192.168.1.102"
WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    os.pwrite(fd, sys.argv[2].encode(), 0)
    os.fsync(fd)
    print("written", flush=True)
except OSError as exc:
    print(f"errno {exc.errno}", flush=True)
"""


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path, servera="192.168.1.101", serverb=SERVER)
    yield w
    w.close()


class Writer:
    """One pwrite+fsync in a child process (a blocked one is killed by PID at the end)."""

    def __init__(self, device: str, data: str):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, device, data],
                                     stdout=subprocess.PIPE, text=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout: float) -> str:
        return self.proc.communicate(timeout=timeout)[0].strip()

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def writers():
    started: list[Writer] = []
    yield lambda device, data: started.append(Writer(device, data)) or started[-1]
    for w in started:
        w.kill()


def serve_and_mirror(world, tmp_path, *create_opts: str) -> tuple[str, str, str]:
    """serverb exports an image; servera attaches it (ggatec create OPTS) and mirrors it
    with a local disk. Returns (backup image, local disk image, mirror device)."""
    backup = world.image("sitesbackup.img", 8)
    exports = tmp_path / "gg.exports"
    exports.write_text(f"192.168.1.0/24 RW {backup}\n")
    assert world.run("serverb", "ggated", str(exports)).returncode == 0
    local = world.image("ada0.img", 8)
    os.makedirs(world.dev_dir("servera"), exist_ok=True)
    os.link(local, os.path.join(world.dev_dir("servera"), "ada0"))
    r = world.run("servera", "ggatec", "create", *create_opts, "-u", "0", SERVER, backup)
    assert r.returncode == 0, r.stderr
    assert world.run("servera", "gmirror", "label", "m", "ada0", "ggate0").returncode == 0
    assert "COMPLETE" in world.run("servera", "gmirror", "status").stdout
    return backup, local, os.path.join(world.dev_dir("servera"), "mirror", "m")


def stop_ggated(world) -> None:
    os.kill(world.state()["ggated"]["serverb"]["pid"], 15)       # seed 000: pkill ggated
    waits.wait_for(lambda: not world.store.alive("serverb", "ggated"), 10, "ggated gone")


def syslog(world, node: str) -> str:
    try:
        with open(world.store.node_dir(node, "run", "syslog.log")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def head(path: str, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def test_ggatec_g_gatec_loop_reconnects_and_default_t0_blocks_mirror_writes(
        world, tmp_path, writers):
    """ggatec.c g_gatec_loop(): "Disconnected [host path]. Connecting..." then a retry every
    2 s; g_gate.c g_gate_create() arms no guard with timeout 0, so the mirror's write waits
    for ggate0 and gmirror keeps it ACTIVE; when ggated is back the write completes on
    both components."""
    backup, local, mirror = serve_and_mirror(world, tmp_path)
    stop_ggated(world)
    where = f"[{SERVER} {backup}]"
    waits.wait_for(lambda: f"Disconnected {where}. Connecting..." in syslog(world, "servera"),
                   10, "ggatec's disconnect message")
    w = writers(mirror, "written while the server was gone")
    # two reconnection attempts later (>= 4 s of ggatec's own clock) it still waits
    waits.wait_for(lambda: syslog(world, "servera").count(f"Connecting {where}...") >= 2,
                   20, "two reconnection attempts")
    assert w.running(), w.result(1)
    st = world.run("servera", "gmirror", "status").stdout
    assert "COMPLETE" in st and "ggate0 (ACTIVE)" in st, st
    assert world.run("serverb", "ggated", str(tmp_path / "gg.exports")).returncode == 0
    assert w.result(20) == "written"
    assert head(backup, 33) == head(local, 33) == b"written while the server was gone"


def test_ggate_device_io_blocks_while_the_link_is_cut_and_resumes_after_heal(
        world, tmp_path, writers):
    """A cut link is a server gone for g_gatec_loop() (the connect fails): I/O on
    /dev/ggate0 itself blocks with -t 0, and goes on once the link is back."""
    backup, _, _ = serve_and_mirror(world, tmp_path)
    world.partition("servera", "serverb")
    waits.wait_for(lambda: "Disconnected" in syslog(world, "servera"), 10, "disconnect")
    w = writers(os.path.join(world.dev_dir("servera"), "ggate0"), "across the cut link")
    waits.wait_for(lambda: syslog(world, "servera").count("Connecting [") >= 1, 10, "retry")
    assert w.running(), w.result(1)
    world.heal("servera", "serverb")
    assert w.result(20) == "written"
    assert head(backup, 19) == b"across the cut link"


def test_ggatec_t_guard_fails_queued_requests_and_gmirror_disconnects_the_component(
        world, tmp_path, writers):
    """ggatec -t 1: g_gate_guard() fails requests queued 5 s or more with EIO;
    g_mirror_regular_request_error() disconnects ggate0, the mirror's write completes on
    ada0 and the mirror is DEGRADED; the dropped component misses the write."""
    backup, local, mirror = serve_and_mirror(world, tmp_path, "-t", "1")
    stop_ggated(world)
    waits.wait_for(lambda: "Disconnected" in syslog(world, "servera"), 10, "disconnect")
    w = writers(mirror, "after the server died")
    assert w.result(30) == "written"
    st = world.run("servera", "gmirror", "status").stdout
    assert st.splitlines()[1:] == ["mirror/m  DEGRADED  ada0 (ACTIVE)"], st
    assert head(local, 21) == b"after the server died"
    assert head(backup, 21) != b"after the server died"
    assert "GEOM_MIRROR: Device m: provider ggate0 disconnected." in syslog(world, "servera")
    # the unit itself fails its requests too (EIO), it does not block
    r = writers(os.path.join(world.dev_dir("servera"), "ggate0"), "x").result(30)
    assert r == "errno 5"


def test_ggatec_destroy_f_cancels_the_queued_requests_with_enxio(world, tmp_path, writers):
    """g_gate.c g_gate_destroy(): a forced destroy of a unit whose server is gone delivers
    ENXIO to every queued request ("Request canceled."), the way out of a -t 0 hang; the
    device was open, so the simulator records the forced removal."""
    backup = world.image("sitesbackup.img", 8)
    exports = tmp_path / "gg.exports"
    exports.write_text(f"192.168.1.0/24 RW {backup}\n")
    assert world.run("serverb", "ggated", str(exports)).returncode == 0
    assert world.run("servera", "ggatec", "create", "-u", "0", SERVER, backup).returncode == 0
    stop_ggated(world)
    w = writers(os.path.join(world.dev_dir("servera"), "ggate0"), "never sent")
    waits.wait_for(lambda: "Connecting [" in syslog(world, "servera"), 10, "a retry")
    assert w.running(), w.result(1)
    r = world.run("servera", "ggatec", "destroy", "-u", "0")
    assert (r.returncode, r.stdout) == (1, "error: ggatec: ioctl(/dev/ggctl): Device busy.\n"
                                           "error: Exiting.\n")
    assert world.run("servera", "ggatec", "destroy", "-f", "-u", "0").returncode == 0
    assert w.result(20) == "errno 6"                      # ENXIO
    assert [v["kind"] for v in world.violations()] == ["device_removed_in_use"]
    assert head(backup, 10) != b"never sent"
