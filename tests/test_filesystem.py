"""filesystem kind on real loop devices: fsck policies, mount, safe umount, refusals."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from conftest import require_tool, run_hahooks
from storage_helpers import (HOLD_CWD, HOLD_DIR, HOLD_FILE, HOLD_IGNORING_TERM, alive,
                             engine, fs_resource, is_mounted, lab, ran, sh)  # noqa: F401

from hahooks import fsck, mounts
from hahooks.errors import Refused, StepFailed, UnsafeToRelease
from hahooks.kinds.base import State


def config(write_config, device, mountpoint, node_extra="", **params):
    return write_config(fs_resource("data", device, mountpoint, **params), node_extra)


def log_records(tmp_path):
    path = tmp_path / "hahooks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- mount / status / idempotence ---------------------------------------------------------

def test_master_mounts_and_slave_unmounts_idempotently(lab, write_config, tmp_path):
    dev = lab.image("idem")
    mp = str(tmp_path / "mnt" / "data")            # does not exist yet: acquire creates it
    cfg = config(write_config, dev, mp)
    run_hahooks("master", "-c", cfg, check=0)
    assert is_mounted(mp)
    assert mounts.at(mounts.read(), mp).source == dev
    again = run_hahooks("master", "-c", cfg, check=0)
    assert "skip data: already held" in again.stderr
    status = run_hahooks("status", "-c", cfg, check=0)
    assert "held" in status.stdout and dev in status.stdout
    run_hahooks("slave", "-c", cfg, check=0)
    assert not is_mounted(mp)
    again = run_hahooks("slave", "-c", cfg, check=0)
    assert "skip data: already released" in again.stderr
    # the second master and the second slave ran no mount and no umount
    commands = [r.get("argv", [""])[0].rsplit("/", 1)[-1] for r in log_records(tmp_path)
                if r.get("event") == "command"]
    assert commands.count("mount") == 1 and commands.count("umount") == 1, commands


def test_device_given_as_symlink_is_recognised(lab, write_config, tmp_path):
    dev = lab.image("link")
    alias = tmp_path / "by-id-data"
    os.symlink(dev, alias)
    mp = str(tmp_path / "mnt")
    eng, _ = engine(config(write_config, str(alias), mp))
    eng.run("master")
    obs = eng.resource(0).status()
    assert obs.state is State.HELD, obs
    eng.run("slave")
    assert not is_mounted(mp)


def test_options_and_fstype_reach_mount(lab, write_config, tmp_path):
    dev = lab.image("opts")
    mp = str(tmp_path / "mnt")
    eng, runner = engine(config(write_config, dev, mp, fstype="ext4", options="noatime,nodev"))
    eng.run("master")
    assert ran(runner, "mount") == [["mount", "-t", "ext4", "-o", "noatime,nodev", dev, mp]]
    opts = mounts.at(mounts.read(), mp).options.split(",")
    assert "noatime" in opts and "nodev" in opts
    eng.run("slave")


def test_waits_for_a_device_that_appears_late(lab, write_config, tmp_path):
    dev = lab.image("late")
    late = tmp_path / "late-device"
    mp = str(tmp_path / "mnt")
    # the link appears while acquire is already waiting for it
    lab.spawn(f"import os, time\ntime.sleep(0.3)\nos.symlink({dev!r}, {str(late)!r})")
    eng, _ = engine(config(write_config, str(late), mp, device_timeout="10s"))
    eng.run("master")
    assert is_mounted(mp)
    eng.run("slave")


def test_missing_device_times_out_bounded_and_mounts_nothing(lab, write_config, tmp_path):
    mp = str(tmp_path / "mnt")
    cfg = config(write_config, str(tmp_path / "no-such-device"), mp, device_timeout="300ms")
    out = run_hahooks("master", "-c", cfg)
    assert out.returncode == 1
    assert "timed out after 0.3s waiting for device" in out.stderr
    assert not is_mounted(mp)


# -- fsck policies ------------------------------------------------------------------------

def test_preen_refuses_a_corrupted_ext4_and_leaves_it_unmounted(lab, write_config, tmp_path):
    dev = lab.image("corrupt-preen")
    lab.corrupt_ext4(dev)
    mp = str(tmp_path / "mnt")
    out = run_hahooks("master", "-c", config(write_config, dev, mp, fsck="preen"))
    assert out.returncode == 1, out.stderr
    assert "needs a manual fsck" in out.stderr and "UNEXPECTED INCONSISTENCY" in out.stderr
    assert 'set fsck = "force"' in out.stderr
    assert not is_mounted(mp)
    # still corrupt: preen changed nothing it was not allowed to
    assert sh("e2fsck", "-n", dev, check=False).returncode & 4


def test_force_repairs_a_corrupted_ext4_then_mounts(lab, write_config, tmp_path):
    dev = lab.image("corrupt-force")
    lab.corrupt_ext4(dev)
    mp = str(tmp_path / "mnt")
    eng, runner = engine(config(write_config, dev, mp, fsck="force"))
    eng.run("master")
    assert is_mounted(mp)
    assert ran(runner, "fsck") == [["fsck", "-p", dev], ["fsck", "-y", dev]]
    assert os.path.isdir(os.path.join(mp, "lost+found"))
    eng.run("slave")
    assert sh("e2fsck", "-n", dev, check=False).returncode == 0


def test_force_on_a_clean_filesystem_costs_one_preen(lab, write_config, tmp_path):
    dev = lab.image("clean-force")
    eng, runner = engine(config(write_config, dev, str(tmp_path / "mnt"), fsck="force",
                                fstype="ext4"))
    eng.run("master")
    assert ran(runner, "fsck") == [["fsck", "-p", "-t", "ext4", dev]]
    eng.run("slave")


def test_auto_skips_journaled_ext4_but_checks_ext2(lab, write_config, tmp_path):
    ext4 = lab.image("auto4")
    eng, runner = engine(config(write_config, ext4, str(tmp_path / "m4"), fstype="ext4"))
    eng.run("master")
    assert ran(runner, "fsck") == []
    eng.run("slave")
    ext2 = lab.image("auto2", fs="ext2")
    lab.corrupt_ext4(ext2)
    eng, runner = engine(config(write_config, ext2, str(tmp_path / "m2"), fstype="ext2"))
    with pytest.raises(StepFailed, match="needs a manual fsck"):
        eng.run("master")
    assert ran(runner, "fsck") == [["fsck", "-p", "-t", "ext2", ext2]]


def test_never_mounts_without_checking(lab, write_config, tmp_path):
    dev = lab.image("never", fs="ext2")
    eng, runner = engine(config(write_config, dev, str(tmp_path / "mnt"), fsck="never",
                                fstype="ext2"))
    eng.run("master")
    assert ran(runner, "fsck") == [] and is_mounted(str(tmp_path / "mnt"))
    eng.run("slave")


def test_xfs_preen_refuses_corruption_force_repairs_auto_skips(lab, write_config, tmp_path):
    require_tool("mkfs.xfs", "xfs_repair", "xfs_db")
    dev = lab.image("xfs", fs="xfs")
    mp = str(tmp_path / "mnt")
    eng, runner = engine(config(write_config, dev, mp, fstype="xfs"))    # auto
    eng.run("master")
    assert ran(runner, "xfs_repair") == [] and ran(runner, "fsck") == []
    assert mounts.at(mounts.read(), mp).fstype == "xfs"
    eng.run("slave")
    lab.corrupt_xfs(dev)
    eng, runner = engine(config(write_config, dev, mp, fstype="xfs", fsck="preen"))
    with pytest.raises(StepFailed, match="corruption found"):
        eng.run("master")
    assert not is_mounted(mp)
    eng, runner = engine(config(write_config, dev, mp, fstype="xfs", fsck="force"))
    eng.run("master")
    assert ran(runner, "xfs_repair") == [["xfs_repair", "-n", dev], ["xfs_repair", dev]]
    assert is_mounted(mp)
    eng.run("slave")
    assert sh("xfs_repair", "-n", dev, check=False).returncode == 0


@pytest.mark.parametrize("code,verdict", [(0, "ok"), (1, "ok"), (2, "warn"), (4, "manual"),
                                          (8, "error"), (12, "error"), (32, "error")])
def test_linux_fsck_exit_codes(code, verdict):
    """fsck(8)/e2fsck(8) bit mask; FreeBSD fsck_ffs codes are in test_fsck_ffs.py."""
    assert fsck.judge_linux(code)[0] == verdict


def test_freebsd_command_forms(lab, write_config, tmp_path):
    """platform = "freebsd": `fsck -p -t ufs DEV`, `mount -t ufs DEV MP`, `umount MP`
    (dry-run, since Linux has no ufs); with fstype ext4 the same forms run for real."""
    dev = lab.image("bsd")
    mp = str(tmp_path / "mnt")
    node = 'platform = "freebsd"\n'
    cfg = write_config(fs_resource("data", dev, mp), node)
    out = run_hahooks("master", "--dry-run", "-c", cfg, check=0)
    assert f"would run: fsck -p -t ufs {dev}" in out.stdout
    assert f"would run: mount -t ufs {dev} {mp}" in out.stdout
    assert not is_mounted(mp)
    cfg = write_config(fs_resource("data", dev, mp, fstype="ext4", fsck="preen"), node,
                       name="real.toml")
    eng, runner = engine(cfg)
    eng.run("master")
    assert ran(runner, "fsck") == [["fsck", "-p", "-t", "ext4", dev]]
    assert ran(runner, "mount") == [["mount", "-t", "ext4", dev, mp]]
    eng.run("slave")
    assert ran(runner, "umount") == [["umount", mp]]


# -- release: holders -----------------------------------------------------------------------

def test_release_stops_every_kind_of_holder_and_spares_the_parent_fs(lab, write_config,
                                                                      tmp_path):
    dev = lab.image("holders")
    mp = str(tmp_path / "mnt")
    cfg = config(write_config, dev, mp, stop_grace="1s")
    run_hahooks("master", "-c", cfg, check=0)
    os.makedirs(f"{mp}/dir")
    with open(f"{mp}/file", "w") as fh:
        fh.write("x")
    ready = str(tmp_path / "ready")
    holders = {
        "cwd": lab.spawn(HOLD_CWD.format(ready=ready + "1"), cwd=f"{mp}/dir", ready=ready + "1"),
        "file": lab.spawn(HOLD_FILE.format(path=f"{mp}/file", ready=ready + "2"),
                          ready=ready + "2"),
        "dir": lab.spawn(HOLD_DIR.format(path=f"{mp}/dir", ready=ready + "3"), ready=ready + "3"),
        "ignores-term": lab.spawn(HOLD_IGNORING_TERM.format(ready=ready + "4"), cwd=mp,
                                  ready=ready + "4"),
    }
    # users of the parent filesystem, right beside the mountpoint: never touched
    with open(tmp_path / "beside", "w") as fh:
        fh.write("y")
    bystanders = [
        lab.spawn(HOLD_CWD.format(ready=ready + "5"), cwd=str(tmp_path), ready=ready + "5"),
        lab.spawn(HOLD_FILE.format(path=tmp_path / "beside", ready=ready + "6"),
                  ready=ready + "6"),
    ]
    out = run_hahooks("slave", "-c", cfg, check=0)
    assert not is_mounted(mp)
    for what, proc in holders.items():
        assert not alive(proc), f"holder ({what}) survived"
    assert all(alive(p) for p in bystanders), "a process on the parent filesystem was hit"
    assert "ignored TERM" in out.stderr        # the TERM-ignoring one needed KILL
    for proc in bystanders:
        assert str(proc.pid) not in out.stderr


def test_unmount_without_holders_runs_one_umount_and_no_scan(lab, write_config, tmp_path):
    dev = lab.image("plain")
    mp = str(tmp_path / "mnt")
    eng, runner = engine(config(write_config, dev, mp))
    eng.run("master")
    out = eng.run("slave")
    assert out.ok and ran(runner, "umount") == [["umount", mp]]


def test_holders_left_alone_when_not_allowed_reported_within_budget(lab, write_config,
                                                                    tmp_path):
    dev = lab.image("nokill")
    mp = str(tmp_path / "mnt")
    cfg = write_config(fs_resource("data", dev, mp, kill_holders=False, timeout="1s"))
    run_hahooks("master", "-c", cfg, check=0)
    holder = lab.spawn(HOLD_CWD.format(ready=tmp_path / "r"), cwd=mp, ready=str(tmp_path / "r"))
    out = run_hahooks("slave", "-c", cfg)
    assert out.returncode == 1
    assert f"still held by pid {holder.pid}" in out.stderr and "cwd" in out.stderr
    assert alive(holder) and is_mounted(mp)
    os.kill(holder.pid, signal.SIGKILL)
    run_hahooks("slave", "-c", cfg, check=0)


def test_never_signals_its_own_parent(lab, write_config, tmp_path):
    """The shell that runs the hook has its cwd inside the mount: it must survive, and the
    release must fail (reporting why) rather than kill it."""
    dev = lab.image("parent")
    mp = str(tmp_path / "mnt")
    cfg = write_config(fs_resource("data", dev, mp, timeout="2s"))
    run_hahooks("master", "-c", cfg, check=0)
    from conftest import hahooks_env
    import sys
    shell = subprocess.run(["sh", "-c", f'cd "$1" && "$2" -m hahooks slave -c "$3"; '
                            'echo "rc=$?"', "sh", mp, sys.executable, cfg],
                           capture_output=True, text=True, env=hahooks_env(), timeout=60)
    assert "rc=1" in shell.stdout, shell
    assert "no holder process found" in shell.stderr
    assert is_mounted(mp)
    run_hahooks("slave", "-c", cfg, check=0)


# -- refusals -----------------------------------------------------------------------------

def test_mountpoint_root_is_refused_at_config_time(write_config):
    out = run_hahooks("check", "-c", write_config(fs_resource("root", "/dev/sda1", "/")))
    assert out.returncode == 6 and "refusing to manage /" in out.stderr


def test_refuses_to_mount_over_something_mounted_below(lab, write_config, tmp_path):
    dev = lab.image("below")
    mp = tmp_path / "mnt"
    (mp / "sub").mkdir(parents=True)
    sh("mount", "-t", "tmpfs", "st-below", mp / "sub")
    out = run_hahooks("master", "-c", config(write_config, dev, str(mp)))
    assert out.returncode == 1 and "is already mounted below it" in out.stderr
    assert mounts.at(mounts.read(), str(mp)) is None


def test_device_mounted_elsewhere_is_broken_and_refused(lab, write_config, tmp_path):
    dev = lab.image("elsewhere")
    other = tmp_path / "other"
    other.mkdir()
    sh("mount", dev, other)
    mp = str(tmp_path / "mnt")
    cfg = config(write_config, dev, mp)
    eng, _ = engine(cfg)
    obs = eng.resource(0).status()
    assert obs.state is State.BROKEN and f"mounted on {other}" in obs.reason
    with pytest.raises(StepFailed, match="not mounting"):
        eng.run("master")
    with pytest.raises(UnsafeToRelease):
        eng.run("slave")                 # never pulls it from the other place either
    assert is_mounted(str(other)) and not is_mounted(mp)


def test_another_device_on_the_mountpoint_is_never_unmounted(lab, write_config, tmp_path):
    ours, theirs = lab.image("ours"), lab.image("theirs")
    mp = tmp_path / "mnt"
    mp.mkdir()
    sh("mount", theirs, mp)
    eng, _ = engine(config(write_config, ours, str(mp)))
    obs = eng.resource(0).status()
    assert obs.state is State.BROKEN and f"another device ({theirs})" in obs.reason
    with pytest.raises(UnsafeToRelease):
        eng.run("slave")
    assert mounts.at(mounts.read(), str(mp)).source == theirs


def test_release_refuses_while_something_is_mounted_below(lab, write_config, tmp_path):
    dev = lab.image("nested")
    mp = str(tmp_path / "mnt")
    eng, _ = engine(config(write_config, dev, mp))
    eng.run("master")
    os.makedirs(f"{mp}/inner")
    sh("mount", "-t", "tmpfs", "st-nested", f"{mp}/inner")
    with pytest.raises(UnsafeToRelease, match="is mounted below it"):
        eng.run("slave")
    assert is_mounted(mp)
    sh("umount", f"{mp}/inner")
    eng.run("slave")
    assert not is_mounted(mp)


def test_direct_acquire_refuses_root():
    """Entry points build specs without config validation paths: the kind refuses too."""
    from hahooks.config import ResourceSpec
    from hahooks.kinds.base import Context
    from hahooks.kinds.filesystem import Filesystem
    from hahooks.runner import Runner
    from hahooks import config as config_mod

    node = config_mod.parse({"resource": [{"name": "x", "kind": "command", "acquire": ["true"],
                                           "release": ["true"], "status": ["true"]}]}).node
    spec = ResourceSpec("root", "filesystem", 5, {
        "device": "/dev/null", "mountpoint": "/", "fstype": "", "options": "", "fsck": "never",
        "device_timeout": 1, "stop_grace": 1, "kill_holders": True, "force_unmount": False})
    with pytest.raises(Refused, match="root filesystem"):
        Filesystem(spec, Context(runner=Runner(dry_run=True), node=node)).acquire()


# -- shared storage needs fencing ---------------------------------------------------------

def test_shared_device_is_mounted_only_after_the_peer_is_fenced(lab, write_config, tmp_path):
    """A device both nodes can reach (iSCSI, FC, a shared virtual disk): a partitioned peer
    may still have it mounted, and mounting it twice corrupts it. `shared = true` makes
    acquire fence the peer first and refuse when no [node] fence succeeded."""
    dev = lab.image("shared")
    mp = str(tmp_path / "mnt")
    unfenced = run_hahooks("master", "-c", config(write_config, dev, mp, shared=True))
    assert unfenced.returncode == 1
    assert "shared" in unfenced.stderr and "[node] fence" in unfenced.stderr
    assert not is_mounted(mp)
    failing = config(write_config, dev, mp, 'fence = ["false"]\n', shared=True)
    assert run_hahooks("master", "-c", failing).returncode == 1
    assert not is_mounted(mp)
    marker = tmp_path / "fenced"
    fence = f'fence = ["sh", "-c", "echo fenced >> {marker}"]\n'
    cfg = config(write_config, dev, mp, fence, shared=True)
    run_hahooks("master", "-c", cfg, check=0)
    assert is_mounted(mp) and marker.read_text() == "fenced\n"
    run_hahooks("master", "-c", cfg, check=0)          # already held: no second fence
    assert marker.read_text() == "fenced\n"
    run_hahooks("slave", "-c", cfg, check=0)
    # not shared (the default: a replicated device only this node can write): no fence
    run_hahooks("master", "-c", config(write_config, dev, mp, fence), check=0)
    assert marker.read_text() == "fenced\n"
    run_hahooks("slave", "-c", cfg, check=0)
    assert not is_mounted(mp)
