"""Issue 17 item 1: uses of the HA filesystem that this process's own mount table does not
show. A second mount namespace (`unshare -m`), a bind mount of a subdirectory that is all
another namespace has left, a lazily detached mount (`umount -l`) a process still holds a
file on. Release must stop at the filesystem layer naming the namespace/PID, leave the
layer below held, and converge once the holder is gone; acquire must refuse to mount a
device another namespace has mounted.

Real parts: loop devices with ext4, real namespaces. Every namespace is owned by a process
this test starts (killed by PID in Lab.close), so its mounts go with it.
"""
from __future__ import annotations

import os
import signal
import json
import subprocess
import sys
import threading
import time

from conftest import hahooks_env, require_tool, run_hahooks
from storage_helpers import (HOLD_FILE, alive, fs_resource, is_mounted, lab, sh)  # noqa: F401

from hahooks import mounts, usage


def below_and_fs(write_config, tmp_path, device, mountpoint, **params) -> tuple[str, str]:
    """A config with a `command` layer below the filesystem (held = its state file exists):
    the layer a release must not touch while the filesystem is still in use."""
    marker = str(tmp_path / "below-held")
    body = ("[[resource]]\nname = \"below\"\nkind = \"command\"\n"
            "acquire = [\"true\"]\nrelease = [\"true\"]\n"
            f"state_file = \"{marker}\"\n\n" + fs_resource("data", device, mountpoint, **params))
    return write_config(body), marker


def own_mnt_ns() -> str:
    return os.readlink("/proc/self/ns/mnt")


def namespace_holder(lab, setup: str = "") -> subprocess.Popen:
    """A process in a new private mount namespace (a copy of ours, so it has every mount we
    have now), after running the shell commands `setup` in it. Registered with the lab,
    which kills it by PID: the namespace and its mounts end with it."""
    require_tool("unshare", "nsenter")
    ready = f"/tmp/st-ns-ready-{os.getpid()}-{len(lab.procs)}"
    script = f"{setup}\n: > {ready}\nexec sleep 600"
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-ec", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    lab.procs.append(proc)
    threading.Thread(target=proc.wait, daemon=True).start()
    deadline = time.monotonic() + 10
    while not os.path.exists(ready):
        assert proc.poll() is None, f"namespace setup failed: {setup}"
        assert time.monotonic() < deadline, f"namespace never got ready: {setup}"
        time.sleep(0.01)
    os.unlink(ready)
    assert os.readlink(f"/proc/{proc.pid}/ns/mnt") != own_mnt_ns()
    return proc


def end(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(proc):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def image_file(tmp_path, name: str) -> str:
    """An ext4 image as a regular file: mount(8) sets up the loop device itself, as it does
    for the simulator's devices (a file, not a block device)."""
    path = str(tmp_path / f"st-{name}.img")
    with open(path, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    sh("mkfs.ext4", "-q", "-F", path)
    return path


def held_then_lazily_detached(lab, write_config, tmp_path, name: str, **params):
    """`master` mounts a fresh ext4, a child process opens a file on it, then `umount -l`
    takes the mount out of every table: (config, below's marker, mountpoint, holder)."""
    mp = str(tmp_path / "mnt")
    cfg, marker = below_and_fs(write_config, tmp_path, lab.image(name), mp, **params)
    run_hahooks("master", "-c", cfg, check=0)
    ready = str(tmp_path / "ready")
    holder = lab.spawn(HOLD_FILE.format(path=f"{mp}/log", ready=ready), ready=ready)
    sh("umount", "-l", mp)
    assert not is_mounted(mp)
    return cfg, marker, mp, holder


def test_mount_copy_in_another_namespace_stops_release_and_names_it(lab, write_config,
                                                                    tmp_path):
    """Fails on the old code: `slave` saw nothing in its own table and released `below`."""
    dev = image_file(tmp_path, "nscopy")
    mp = str(tmp_path / "mnt")
    cfg, marker = below_and_fs(write_config, tmp_path, dev, mp)
    run_hahooks("master", "-c", cfg, check=0)
    holder = namespace_holder(lab)          # its namespace got a copy of the mount
    out = run_hahooks("slave", "-c", cfg)
    assert out.returncode != 0, out.stderr
    assert "mount namespace" in out.stderr and f"pid {holder.pid}" in out.stderr, out.stderr
    assert os.path.exists(marker), "the layer below was released under a live mount"
    assert not is_mounted(mp)               # our own mount is gone: only theirs is left
    again = run_hahooks("slave", "-c", cfg)  # still there: the re-run stops at the same place
    assert again.returncode != 0 and f"pid {holder.pid}" in again.stderr, again.stderr
    assert os.path.exists(marker)
    end(holder)
    run_hahooks("slave", "-c", cfg, check=0)
    assert not os.path.exists(marker)


def test_bind_mount_of_a_subdirectory_left_in_another_namespace(lab, write_config, tmp_path):
    """The other namespace unmounted the filesystem itself but keeps a bind mount of a
    subdirectory at another path: found by device number, not by path. Fails on the old
    code (below released)."""
    dev = lab.image("bind")
    mp = tmp_path / "mnt"
    cfg, marker = below_and_fs(write_config, tmp_path, dev, str(mp))
    run_hahooks("master", "-c", cfg, check=0)
    (mp / "sub").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    holder = namespace_holder(lab, f"mount --bind {mp}/sub {elsewhere}\numount {mp}")
    theirs = open(f"/proc/{holder.pid}/mountinfo").read()
    assert f" {elsewhere} " in theirs and f" {mp} " not in theirs
    out = run_hahooks("slave", "-c", cfg)
    assert out.returncode != 0, out.stderr
    assert str(elsewhere) in out.stderr and f"pid {holder.pid}" in out.stderr, out.stderr
    assert os.path.exists(marker)
    end(holder)
    run_hahooks("slave", "-c", cfg, check=0)
    assert not os.path.exists(marker)


def test_lazily_detached_mount_with_an_open_file_stops_release(lab, write_config, tmp_path):
    """`umount -l` took the mount out of every table while a process still writes a file
    on it: found by the device number of its open file. Fails on the old code (`slave`
    saw the layer released and released `below`)."""
    cfg, marker, mp, holder = held_then_lazily_detached(lab, write_config, tmp_path, "lazy")
    out = run_hahooks("slave", "-c", cfg)
    assert out.returncode != 0, out.stderr
    assert f"pid {holder.pid}" in out.stderr, out.stderr
    assert os.path.exists(marker), "the layer below was released under an open file"
    status = run_hahooks("status", "-c", cfg)
    assert "data" in status.stdout and "released" not in status.stdout.split("data", 1)[1] \
        .splitlines()[0], status.stdout
    assert alive(holder)                    # reported, never signalled
    end(holder)
    run_hahooks("slave", "-c", cfg, check=0)
    assert not os.path.exists(marker)


def test_acquire_refuses_a_device_mounted_in_another_namespace(lab, write_config, tmp_path):
    """Only the other namespace has it mounted: the old code mounted it a second time."""
    dev = lab.image("theirs")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    holder = namespace_holder(lab, f"mount {dev} {theirs}")
    mp = str(tmp_path / "mnt")
    cfg, marker = below_and_fs(write_config, tmp_path, dev, mp)
    out = run_hahooks("master", "-c", cfg)
    assert out.returncode != 0, out.stderr
    assert f"pid {holder.pid}" in out.stderr and "mount namespace" in out.stderr, out.stderr
    assert not is_mounted(mp)
    end(holder)
    run_hahooks("master", "-c", cfg, check=0)
    assert is_mounted(mp)
    run_hahooks("slave", "-c", cfg, check=0)


def test_parallel_group_names_the_holder_of_a_lazily_detached_member(lab, write_config,
                                                                     tmp_path):
    """In a group released together the holder of a lazily detached member is found by the
    group's one shared /proc pass; the other member is released, the layer below the group
    is not. Fails on the old code (the detached member counted as released, so `below`
    was released too)."""
    from hahooks.errors import UnsafeToRelease
    import pytest
    from storage_helpers import engine

    mps = {name: str(tmp_path / "mnt" / name) for name in ("la", "lb")}
    body = "".join(fs_resource(name, lab.image(name, size_mb=16), mp, parallel="g",
                               fstype="ext4") + "\n" for name, mp in mps.items())
    marker = str(tmp_path / "below-held")
    cfg = write_config("[[resource]]\nname = \"below\"\nkind = \"command\"\n"
                       "acquire = [\"true\"]\nrelease = [\"true\"]\n"
                       f"state_file = \"{marker}\"\n\n" + body)
    eng, _ = engine(cfg)
    eng.run("master")
    ready = str(tmp_path / "ready")
    holder = lab.spawn(HOLD_FILE.format(path=f"{mps['la']}/log", ready=ready), ready=ready)
    sh("umount", "-l", mps["la"])
    with pytest.raises(UnsafeToRelease) as err:
        eng.run("slave")
    assert "release la failed" in str(err.value) and f"pid {holder.pid}" in str(err.value)
    assert not is_mounted(mps["lb"]) and os.path.exists(marker)
    assert [s.scans for s in eng.holder_scans] == [1]
    end(holder)
    eng, _ = engine(cfg)
    eng.run("slave")
    assert not os.path.exists(marker)


def test_a_file_device_is_matched_through_its_own_path_only(lab, tmp_path):
    """Two simulated nodes on one machine show one image through two hard links (each
    node's device path): a loop device set up by mounting one link belongs to that node's
    device, not to the other's, though the inode is the same."""
    image = image_file(tmp_path, "shared")
    ours, peers = str(tmp_path / "ours-dev"), str(tmp_path / "peers-dev")
    os.link(image, ours)
    os.link(image, peers)
    mp = tmp_path / "peer-mnt"
    mp.mkdir()
    sh("mount", peers, mp)                     # Lab.close unmounts it (under tmp_path)
    loop = mounts.at(mounts.read(), str(mp)).source
    assert usage.device_numbers(peers) == {os.stat(loop).st_rdev}
    assert usage.device_numbers(ours) == set()
    assert usage.elsewhere(usage.device_numbers(ours)) == []
    sh("umount", mp)


def test_acquire_refuses_a_lazily_detached_filesystem_still_in_use(lab, write_config,
                                                                   tmp_path):
    """Mounting it again would share the superblock a process still writes through the
    detached mount. Fails on the old code (it mounted)."""
    cfg, _, mp, holder = held_then_lazily_detached(lab, write_config, tmp_path, "relazy")
    out = run_hahooks("master", "-c", cfg)
    assert out.returncode != 0 and f"pid {holder.pid}" in out.stderr, out.stderr
    assert not is_mounted(mp)
    end(holder)
    run_hahooks("master", "-c", cfg, check=0)
    assert is_mounted(mp)
    run_hahooks("slave", "-c", cfg, check=0)


def blind_master(cfg: str) -> subprocess.Popen:
    """`hahooks master` in a PID namespace of its own with its own /proc: it sees none of
    our processes or mount namespaces, as a node of a one-kernel lab (or a container) sees
    none of its crashed peer's."""
    require_tool("unshare")
    return subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                             "-m", "hahooks", "master", "-c", cfg], env=hahooks_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def logged(cfg: str, message: str) -> bool:
    log = os.path.join(os.path.dirname(cfg), "hahooks.jsonl")
    if not os.path.exists(log):
        return False
    with open(log) as fh:
        return any(message in json.loads(line).get("message", "") for line in fh)


def test_acquire_waits_for_a_detached_filesystem_nobody_visible_holds(lab, write_config,
                                                                      tmp_path):
    """What a crashed peer of a one-kernel lab leaves for a moment (CI failure of the
    keepalived pair test): the filesystem still active, no mount in any table, no process
    to name. It is going away by itself: acquire waits (device_timeout) and mounts once it
    is gone. The old code refused at once and the failover never happened."""
    cfg, _, _, holder = held_then_lazily_detached(lab, write_config, tmp_path, "dying",
                                                  device_timeout="60s")
    devs = usage.device_numbers(lab.loops[-1])
    master = blind_master(cfg)
    try:
        deadline = time.monotonic() + 60
        while not logged(cfg, "acquire data: broken"):
            assert master.poll() is None, master.communicate()
            assert time.monotonic() < deadline, "master never reached the filesystem"
            time.sleep(0.05)
        time.sleep(0.5)
        assert master.poll() is None, master.communicate()     # waiting, not refused
        end(holder)                                             # the last user goes
        out, err = master.communicate(timeout=60)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
    assert master.returncode == 0, err
    assert logged(cfg, "for the kernel to finish unmounting"), err
    # its mount went with its namespace: wait for the kernel to let go before cleanup
    deadline = time.monotonic() + 30
    while usage.elsewhere(devs):
        assert time.monotonic() < deadline, usage.elsewhere(devs)
        time.sleep(0.05)


def test_acquire_refuses_a_detached_filesystem_that_stays(lab, write_config, tmp_path):
    """The same, but its holder never goes (a process in a PID namespace we cannot see):
    after device_timeout acquire refuses, saying no process was found; nothing mounted."""
    cfg, marker, _, holder = held_then_lazily_detached(lab, write_config, tmp_path, "stays",
                                                       device_timeout="1s")
    master = blind_master(cfg)
    _, err = master.communicate(timeout=60)
    assert master.returncode != 0, err
    assert "still active with no mount" in err and "no process found holding it" in err, err
    assert logged(cfg, "for the kernel to finish unmounting"), err
    assert alive(holder) and os.path.exists(marker)
    end(holder)
