"""`hooks/mount` and `hooks/import-pool` called the way Heartbeat v1 calls resource scripts:
positional arguments, the action last, no config file, status read from stdout with
ResourceManager's own case patterns (docs/reference/heartbeat.md §2)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import LIB, ROOT
from storage_helpers import is_mounted, lab, mounts, sh  # noqa: F401

# ResourceManager's status test, verbatim: stdout only, the exit code is ignored
RESOURCE_MANAGER_STATUS = r'''
case `"$@" status` in
  *[Nn][Oo][Tt]\ *[Rr]unning*) echo 3;;
  *[Rr]unning*|*OK*)           echo 0;;
  *)                           echo 3;;
esac
'''


@pytest.fixture
def hook_env(tmp_path):
    """PATH as Heartbeat gives it, plus a `hahooks` that runs this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "hahooks").write_text(f"#!/bin/sh\nexec {sys.executable} -m hahooks \"$@\"\n")
    (bin_dir / "hahooks").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": LIB}
    return env


def hook(env, name, *args, check=None):
    proc = subprocess.run([os.path.join(ROOT, "hooks", name), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def heartbeat_thinks(env, name, *args) -> str:
    """'running' or 'stopped', as Heartbeat's ResourceManager would conclude."""
    out = subprocess.run(["sh", "-c", RESOURCE_MANAGER_STATUS, "sh",
                          os.path.join(ROOT, "hooks", name), *map(str, args)],
                         capture_output=True, text=True, env=env, timeout=120).stdout.strip()
    return {"0": "running", "3": "stopped"}[out]


def test_mount_start_status_stop_with_heartbeat_arguments(lab, hook_env, tmp_path):
    dev = lab.image("hb")
    mp = str(tmp_path / "drbd")
    args = (dev, mp, "ext4")
    # Heartbeat stops a whole group after a failed start, including what never started
    assert hook(hook_env, "mount", *args, "stop", check=0).stdout == ""
    status = hook(hook_env, "mount", *args, "status", check=7)
    assert status.stdout == "stopped\n"
    assert heartbeat_thinks(hook_env, "mount", *args) == "stopped"
    hook(hook_env, "mount", *args, "start", check=0)
    assert mounts.at(mounts.read(), mp).source == dev
    hook(hook_env, "mount", *args, "start", check=0)          # idempotent
    status = hook(hook_env, "mount", *args, "status", check=0)
    assert status.stdout == "running\n" and f"{dev} mounted on {mp}" in status.stderr
    assert heartbeat_thinks(hook_env, "mount", *args) == "running"
    hook(hook_env, "mount", *args, "stop", check=0)
    assert not is_mounted(mp)
    hook(hook_env, "mount", *args, "stop", check=0)
    assert heartbeat_thinks(hook_env, "mount", *args) == "stopped"


def test_mount_options_argument_and_two_argument_form(lab, hook_env, tmp_path):
    dev = lab.image("hbopts")
    mp = str(tmp_path / "data")
    hook(hook_env, "mount", dev, mp, "ext4", "noatime,nodev", "start", check=0)
    assert {"noatime", "nodev"} <= set(mounts.at(mounts.read(), mp).options.split(","))
    hook(hook_env, "mount", dev, mp, "status", check=0)       # type and options are optional
    hook(hook_env, "mount", dev, mp, "stop", check=0)
    assert not is_mounted(mp)


def test_broken_and_failed_never_read_as_running(lab, hook_env, tmp_path):
    ours, theirs = lab.image("hbours"), lab.image("hbtheirs")
    mp = tmp_path / "data"
    mp.mkdir()
    sh("mount", theirs, mp)
    status = hook(hook_env, "mount", ours, mp, "ext4", "status", check=1)
    assert status.stdout == "stopped (broken)\n"
    assert f"another device ({theirs})" in status.stderr
    assert heartbeat_thinks(hook_env, "mount", ours, mp, "ext4") == "stopped"
    start = hook(hook_env, "mount", ours, mp, "ext4", "start", check=1)
    stop = hook(hook_env, "mount", ours, mp, "ext4", "stop", check=1)
    for out in (status, start, stop):
        assert "OK" not in out.stdout + out.stderr and "running" not in out.stdout
    assert mounts.at(mounts.read(), str(mp)).source == theirs   # never unmounted theirs


def test_failed_start_leaves_nothing_mounted(lab, hook_env, tmp_path):
    dev = lab.image("hbfail", fs="ext2")
    lab.corrupt_ext4(dev)
    mp = str(tmp_path / "data")
    out = hook(hook_env, "mount", dev, mp, "ext2", "start", check=1)
    assert "needs a manual fsck" in out.stderr and not is_mounted(mp)
    assert heartbeat_thinks(hook_env, "mount", dev, mp, "ext2") == "stopped"
    hook(hook_env, "mount", dev, mp, "ext2", "stop", check=0)
    hook(hook_env, "mount", "--fsck", "force", dev, mp, "ext2", "start", check=0)
    assert is_mounted(mp)
    hook(hook_env, "mount", dev, mp, "ext2", "stop", check=0)


@pytest.mark.parametrize("args,code,message", [
    (["/dev/sda1", "/", "ext4", "start"], 6, "refusing to manage /"),
    (["/dev/sda1", "/data", "ext4", "-o ro", "start"], 6, "comma-separated"),
    (["/dev/sda1", "relative", "start"], 6, "expected an absolute path"),
    (["/dev/sda1", "/data", "restart"], 2, "usage: hahooks mount"),
    (["/dev/sda1", "start"], 2, "usage: hahooks mount"),
    (["/dev/sda1", "/data", "ext4", "rw", "extra", "start"], 2, "usage: hahooks mount"),
])
def test_mount_bad_arguments(hook_env, args, code, message):
    out = hook(hook_env, "mount", *args)
    assert out.returncode == code and message in out.stderr, out
    assert "OK" not in out.stdout and "running" not in out.stdout


def test_status_of_bad_arguments_reads_as_stopped(hook_env):
    out = hook(hook_env, "mount", "/dev/sda1", "/", "status")
    assert out.returncode == 6 and out.stdout == "stopped (error)\n"
    assert heartbeat_thinks(hook_env, "mount", "/dev/sda1", "/") == "stopped"


@pytest.mark.parametrize("args,message", [
    (["tank", "start", "status"], "usage: hahooks import-pool"),
    (["tank/data", "start"], "not a safe name"),
    (["start"], "usage: hahooks import-pool"),
])
def test_import_pool_bad_arguments(hook_env, args, message):
    out = hook(hook_env, "import-pool", *args)
    assert out.returncode in (2, 6) and message in out.stderr, out


def test_import_pool_with_heartbeat_arguments_in_a_zfs_node(tmp_path, hook_env):
    """haresources `hahooks-import-pool::POOL`: Heartbeat passes only the pool name, so the
    pool sits on a loop device, where zpool import finds it without -d."""
    from zfs_helpers import pools, sandbox_lab

    Lab = sandbox_lab()
    pool = f"sthb{os.getpid() % 10000}"
    with Lab(prefix=f"sthb{os.getpid() % 10000}", workdir=str(tmp_path / "lab")) as lab:
        a = lab.node("nodea", hostid=0x0A0A0001, zfs=True)
        a.start_zfs()
        dev = lab.loop_image("st-hbpool", 128)
        a.run(["zpool", "create", "-m", str(tmp_path / "mnt" / pool), pool, dev])
        a.run(["zpool", "export", pool])
        script = os.path.join(ROOT, "hooks", "import-pool")

        def hb(*args):
            return a.run([script, pool, *args], check=False, env=hook_env)

        def heartbeat_thinks():
            out = a.run(["sh", "-c", RESOURCE_MANAGER_STATUS, "sh", script, pool],
                        env=hook_env).stdout.strip()
            return {"0": "running", "3": "stopped"}[out]
        assert hb("stop").returncode == 0                      # never started
        assert heartbeat_thinks() == "stopped"
        status = hb("status")
        assert (status.returncode, status.stdout) == (7, "stopped\n")
        assert hb("start").returncode == 0
        assert pools(a) == {pool: "ONLINE"} and heartbeat_thinks() == "running"
        assert hb("start").returncode == 0
        assert hb("status").stdout == "running\n"
        assert hb("stop").returncode == 0 and pools(a) == {}
        assert hb("stop").returncode == 0 and heartbeat_thinks() == "stopped"
        # zfs-fuse gone: status cannot tell, and says so without reading as running
        a.stop_zfs()
        status = hb("status")
        assert status.stdout == "stopped (broken)\n" and status.returncode == 1
        assert "zfs-fuse" in status.stderr or "failed" in status.stderr
        assert heartbeat_thinks() == "stopped"
