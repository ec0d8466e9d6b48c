"""hahooks.lab.sim.blockio: simulated devices whose reads and writes really block (a FUSE server
with gates). The HAST stall tests are in test_sim_hast.py; these pin the generic API the
ggate/gmirror devices will use."""
from __future__ import annotations

import contextlib
import errno
import os
import threading
import time

import pytest

from conftest import require, require_root


@pytest.fixture
def server(tmp_path):
    require_root()
    require(os.path.exists("/dev/fuse"), "/dev/fuse")
    from hahooks.lab.sim import blockio

    image = tmp_path / "a.img"
    image.write_bytes(b"A" * 8192)
    control = blockio.Control(str(tmp_path / "control.json"))
    control.expose("dev0", [str(image)])
    mount = str(tmp_path / "mnt")
    pid = blockio.start(mount, control.path, str(tmp_path / "blockio.log"))
    try:
        yield control, mount, pid, tmp_path
    finally:
        blockio.stop(pid, mount)
        assert not blockio.mounted(mount)


def stalled_read(mount: str, name: str = "dev0"):
    """Open the device and start a read in a thread; asserts that it blocks. Returns
    (fd, thread, results)."""
    fd = os.open(os.path.join(mount, name), os.O_RDWR)
    out: list = []

    def run():
        try:
            out.append(os.pread(fd, 4, 0))
        except OSError as exc:
            out.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive(), "the read did not block"
    return fd, t, out


def test_stalled_request_blocks_only_its_caller(server):
    from hahooks.lab.sim import blockio
    control, mount, _, tmp = server
    other = tmp / "b.img"
    other.write_bytes(b"B" * 4096)
    control.expose("dev1", [str(other)])
    control.set_gate("dev0", blockio.stall())
    fd0, t, out = stalled_read(mount)
    try:
        with open(os.path.join(mount, "dev1"), "rb") as f:     # the server is multithreaded
            assert f.read(4) == b"BBBB"
        control.set_gate("dev0", blockio.OPEN)
        t.join(10)
        assert out == [b"AAAA"]
    finally:
        os.close(fd0)


def test_stall_until_then_error_fails_with_errno(server):
    from hahooks.lab.sim import blockio
    control, mount, _, _ = server
    control.set_gate("dev0", blockio.stall(until=time.time() + 0.5, then="error",
                                           err=errno.EIO))
    fd = os.open(os.path.join(mount, "dev0"), os.O_RDWR)
    try:
        with pytest.raises(OSError) as exc:
            os.pwrite(fd, b"x", 0)
        assert exc.value.errno == errno.EIO
    finally:
        os.close(fd)


def test_writes_reach_every_backing_image(server):
    control, mount, _, tmp = server
    mirror = tmp / "m.img"
    mirror.write_bytes(b"\0" * 8192)
    control.expose("dev0", [str(tmp / "a.img"), str(mirror)])
    fd = os.open(os.path.join(mount, "dev0"), os.O_RDWR)
    try:
        os.pwrite(fd, b"hello", 100)
    finally:
        os.close(fd)
    assert (tmp / "a.img").read_bytes()[100:105] == b"hello"
    assert mirror.read_bytes()[100:105] == b"hello"


def test_server_death_releases_stalled_callers_and_mount_detaches(server):
    from hahooks.lab.sim import blockio
    control, mount, pid, _ = server
    control.set_gate("dev0", blockio.stall())
    fd, t, out = stalled_read(mount)
    try:
        os.kill(pid, 9)                          # the node dies with its server
        t.join(10)
        assert not t.is_alive() and isinstance(out[0], OSError)
    finally:
        with contextlib.suppress(OSError):      # close(2) reports ENOTCONN here
            os.close(fd)
    assert blockio.mounted(mount)                # dead server: stat fails, mountinfo knows
    assert blockio.detach(mount) and not blockio.mounted(mount)
