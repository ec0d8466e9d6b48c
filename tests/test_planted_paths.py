"""Issue 17 item 2: paths an unprivileged user can redirect (a symlink planted in a sticky
world-writable dir, a parent anyone can write) are refused by `check` with file:line and
by acquire at run time (exit 4), before anything is mounted, renamed, linked or started.
The attacker is a real unprivileged process (`nobody`, forked and setuid)."""
from __future__ import annotations

import os
import pwd

import pytest

from conftest import require_root, run_hahooks
from storage_helpers import fs_resource, is_mounted, lab, toml_value  # noqa: F401

from hahooks import mounts


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def as_nobody_symlink(directory, name: str, target) -> None:
    """`nobody` creates directory/name -> target. The dir fd is opened while still root:
    pytest's tmp_path lies under a 0700 dir nobody could not walk through."""
    require_root()
    user = nobody()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    pid = os.fork()
    if pid == 0:                                 # the attacker: never returns to pytest
        code = 1
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.symlink(str(target), name, dir_fd=fd)
            code = 0
        finally:
            os._exit(code)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "nobody could not plant the symlink"
    assert os.lstat(os.path.join(directory, name)).st_uid == user.pw_uid


def sticky_dir(path):
    """A /tmp-like directory: root's, mode 1777."""
    path.mkdir()
    os.chmod(path, 0o1777)
    return path


def one_line(r) -> str:
    """`check` says one line; master/slave log their steps first and end with one line."""
    lines = r.stderr.splitlines()
    assert lines, r
    return lines[-1]


def mounted_on(path) -> list[mounts.Mount]:
    real = os.path.realpath(path)
    return [m for m in mounts.read() if m.mountpoint == real]


# -- the mountpoint -----------------------------------------------------------------------

def test_mountpoint_planted_as_symlink_by_nobody_is_refused(lab, write_config, tmp_path):
    dev = lab.image("planted")
    shared = sticky_dir(tmp_path / "shared")
    victim = tmp_path / "victim"                 # a root-owned dir the attacker aims at
    victim.mkdir()
    (victim / "precious").write_text("root's\n")
    mp = shared / "mnt"                          # absent: acquire would create it
    cfg = write_config(fs_resource("data", dev, str(mp)))
    as_nobody_symlink(shared, "mnt", victim)
    try:
        r = run_hahooks("master", "-c", cfg)
        assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
        line = one_line(r)
        assert f"the symlink {mp} is owned" in line and f"uid {nobody().pw_uid}" in line, line
        assert mounted_on(victim) == [] and mounted_on(mp) == []
        assert (victim / "precious").read_text() == "root's\n"
        assert os.path.islink(mp)                # nothing was created or moved there
        r = run_hahooks("check", "-c", cfg)
        assert r.returncode == 6, (r.returncode, r.stdout, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
        line = one_line(r)
        assert f"{cfg}:11: resource 'data': mountpoint: " in line, line
        assert f"the symlink {mp} is owned" in line, line
    finally:
        for m in reversed(mounted_on(victim) + mounted_on(mp)):   # the old code mounted
            os.system(f"umount '{m.mountpoint}'")


def test_mountpoint_planted_during_fsck_is_caught_before_the_mount(lab, write_config):
    """The race: the mountpoint is absent when acquire starts (a sticky dir: fine, root
    creates it) and nobody plants the symlink while fsck runs. The walk right before
    the mount finds it; the old code mounted over the symlink's target."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="hahooks-race-")    # nobody must walk into it: 0755
    try:
        os.chmod(base, 0o755)
        shared = sticky_dir(__import__("pathlib").Path(base) / "shared")
        victim = os.path.join(base, "victim")
        os.mkdir(victim)
        mp = shared / "mnt"
        fsck = os.path.join(base, "fsck")
        with open(fsck, "w") as fh:
            fh.write("#!/bin/sh\n"
                     f"setpriv --reuid={nobody().pw_uid} --regid={nobody().pw_gid} "
                     f"--clear-groups ln -s {victim} {mp} || exit 99\n"
                     'exec /sbin/fsck "$@"\n')
        os.chmod(fsck, 0o755)
        dev = lab.image("race")
        cfg = write_config(fs_resource("data", dev, str(mp), fstype="ext4", fsck="preen"),
                           f'paths = {{ fsck = "{fsck}" }}\n')
        r = run_hahooks("master", "-c", cfg)
        assert os.path.islink(mp), r.stderr                # the plant happened mid-acquire
        assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
        assert f"the symlink {mp} is owned by uid {nobody().pw_uid}" in one_line(r)
        assert mounted_on(victim) == [] and mounted_on(mp) == []
    finally:
        for m in reversed([m for m in mounts.read() if m.mountpoint.startswith(base + "/")]):
            os.system(f"umount '{m.mountpoint}'")           # the old code mounted
        shutil.rmtree(base)


def test_mountpoint_created_by_root_in_a_sticky_dir_is_used(lab, write_config, tmp_path):
    """The sticky bit protects root's own entry: acquire creates it and mounts there."""
    dev = lab.image("sticky-ok")
    mp = sticky_dir(tmp_path / "shared") / "mnt"
    cfg = write_config(fs_resource("data", dev, str(mp)))
    assert run_hahooks("check", "-c", cfg).returncode == 0
    try:
        run_hahooks("master", "-c", cfg, check=0)
        assert is_mounted(str(mp))
    finally:
        run_hahooks("slave", "-c", cfg, check=0)
    assert not is_mounted(str(mp))


def test_mountpoint_under_a_world_writable_dir_is_refused(lab, write_config, tmp_path):
    dev = lab.image("open-dir")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    mp = open_dir / "mnt"
    mp.mkdir()
    cfg = write_config(fs_resource("data", dev, str(mp)))
    r = run_hahooks("master", "-c", cfg)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert f"{open_dir} is writable by group or others without the sticky bit" in one_line(r)
    assert not is_mounted(str(mp))


# -- links (drbdlinks-style) -------------------------------------------------------------

def links_resource(links: dict) -> str:
    return f'[[resource]]\nname = "links"\nkind = "links"\nlinks = {toml_value(links)}\n'


def test_links_backup_planted_by_nobody_is_refused(write_config, tmp_path):
    """In a sticky dir, nobody plants PATH.hahooks-orig -> a file of their choice where
    PATH has no original: the old release "restores" it into PATH (root's services then
    read what nobody chose)."""
    shared = sticky_dir(tmp_path / "etc")
    target = tmp_path / "data" / "app.conf"
    target.parent.mkdir()
    target.write_text("replicated\n")
    cfg = write_config(links_resource({str(shared / "app.conf"): str(target)}))
    as_nobody_symlink(shared, "app.conf.hahooks-orig", "/etc/shadow")
    for command in ("slave", "master"):
        r = run_hahooks(command, "-c", cfg)
        assert r.returncode == 4, (command, r.returncode, r.stdout, r.stderr)
        assert "app.conf.hahooks-orig is owned by uid 65534 in the world-writable directory" in one_line(r), one_line(r)
        assert not os.path.lexists(shared / "app.conf")   # nothing renamed or linked
    r = run_hahooks("check", "-c", cfg)
    assert r.returncode == 6 and f"{cfg}:10: resource 'links': links: " in one_line(r), r.stderr


def test_links_path_in_a_world_writable_dir_is_refused(write_config, tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    target = tmp_path / "data.conf"
    target.write_text("replicated\n")
    cfg = write_config(links_resource({str(open_dir / "app.conf"): str(target)}))
    r = run_hahooks("master", "-c", cfg)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert "without the sticky bit" in one_line(r)
    assert not os.path.lexists(open_dir / "app.conf")


# -- pidfiles ----------------------------------------------------------------------------

def service_resource(pidfile, start: str) -> str:
    argv = ["sh", "-c", start]
    return ('[[resource]]\nname = "svc"\nkind = "service"\nmanager = "command"\n'
            f'start = {toml_value(argv)}\nstop = ["true"]\npidfile = "{pidfile}"\n')


def test_pidfile_planted_as_symlink_by_nobody_is_refused(write_config, tmp_path):
    """nobody points the pidfile at a root-owned file naming a live process: the old code
    reads it, calls the service running and never starts it."""
    run = sticky_dir(tmp_path / "run")
    decoy = tmp_path / "decoy.pid"
    decoy.write_text(f"{os.getpid()}\n")         # this test's own pid: alive
    trace = tmp_path / "trace"
    cfg = write_config(service_resource(run / "svc.pid", f"echo started >> {trace}"))
    as_nobody_symlink(run, "svc.pid", decoy)
    r = run_hahooks("master", "-c", cfg)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert "svc.pid" in one_line(r) and "symlink" in one_line(r), one_line(r)
    assert not trace.exists(), "the service was started"


@pytest.mark.parametrize("mode", [0o1777, 0o755])
def test_pidfile_in_a_protected_run_dir_still_works(write_config, tmp_path, mode):
    """The pidfile itself may be the daemon's (it is only read, without following)."""
    run = tmp_path / "run"
    run.mkdir()
    os.chmod(run, mode)
    pidfile = run / "svc.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    os.chown(pidfile, nobody().pw_uid, -1)
    cfg = write_config(service_resource(pidfile, "true"))
    r = run_hahooks("status", "-c", cfg)
    assert "held" in r.stdout and f"pid {os.getpid()} running" in r.stdout, r.stdout


# -- command state files -----------------------------------------------------------------

def test_command_state_file_in_a_world_writable_dir_is_refused(write_config, tmp_path):
    """root creates and removes state_file: in a dir anyone can write, another user decides
    what it is (and so whether the layer looks held)."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    trace = tmp_path / "trace"
    cfg = write_config(f"""\
[[resource]]
name = "cmd"
kind = "command"
acquire = ["sh", "-c", "echo acquired >> {trace}"]
release = ["true"]
state_file = "{open_dir / 'held'}"
""")
    r = run_hahooks("master", "-c", cfg)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert "without the sticky bit" in one_line(r)
    assert not trace.exists() and not os.path.lexists(open_dir / "held")
    r = run_hahooks("check", "-c", cfg)
    assert r.returncode == 6 and f"{cfg}:12: resource 'cmd': state_file: " in one_line(r), \
        r.stderr
