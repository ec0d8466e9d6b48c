"""safepath.verify on real directories: trusted symlinks are followed (relative, absolute,
with ..), replaceable ones refused, missing tails accepted only where root creates them."""
from __future__ import annotations

import os

import pytest

from conftest import require_root

from hahooks import safepath
from hahooks.safepath import UnsafePath

NOBODY = 65534


@pytest.fixture
def root_dir(tmp_path):
    require_root()
    return tmp_path


def test_trusted_symlinks_are_resolved(root_dir):
    real = root_dir / "srv" / "data"
    real.mkdir(parents=True)
    os.symlink("srv/data", root_dir / "rel")                 # relative
    os.symlink(str(real), root_dir / "abs")                  # absolute
    os.symlink("../srv/./data", root_dir / "srv" / "up")     # .. inside the target
    for name in ("rel", "abs", "srv/up"):
        found = safepath.verify(str(root_dir / name))
        assert found.resolved == os.path.realpath(real) and found.exists, name


def test_missing_tail_keeps_the_resolved_prefix(root_dir):
    os.symlink("srv", root_dir / "link")
    (root_dir / "srv").mkdir()
    found = safepath.verify(str(root_dir / "link" / "a" / "b"))
    assert not found.exists
    assert found.resolved == os.path.join(os.path.realpath(root_dir / "srv"), "a", "b")


def test_a_missing_entry_in_a_world_writable_dir_without_sticky_bit_is_refused(root_dir):
    (root_dir / "open").mkdir()
    os.chmod(root_dir / "open", 0o777)
    with pytest.raises(UnsafePath, match="without the sticky bit"):
        safepath.verify(str(root_dir / "open" / "mnt"))


def test_sticky_dir_protects_roots_entries_only(root_dir):
    shared = root_dir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "mine").mkdir()
    (shared / "theirs").mkdir()
    os.chown(shared / "theirs", NOBODY, -1)
    assert safepath.verify(str(shared / "mine" / "x")).resolved.endswith("/shared/mine/x")
    assert safepath.verify(str(shared / "absent")).exists is False
    with pytest.raises(UnsafePath, match=f"theirs is owned by uid {NOBODY}"):
        safepath.verify(str(shared / "theirs" / "x"))


def test_final_replaceable_is_allowed_only_for_a_non_symlink(root_dir):
    run = root_dir / "run"
    run.mkdir()
    os.chown(run, NOBODY, -1)                # a daemon's own run dir
    (run / "d.pid").write_text("1\n")
    assert safepath.verify(str(run / "d.pid"), final_replaceable=True).exists
    with pytest.raises(UnsafePath, match=f"owned by uid {NOBODY}"):
        safepath.verify(str(run / "d.pid"))
    os.symlink("/etc/hostname", run / "l.pid")
    with pytest.raises(UnsafePath, match="refusing to follow it"):
        safepath.verify(str(run / "l.pid"), final_replaceable=True)


def test_final_symlink_not_followed_when_asked(root_dir):
    os.symlink("/nonexistent/target", root_dir / "link")
    found = safepath.verify(str(root_dir / "link"), follow_final=False)
    assert found.resolved == os.path.join(os.path.realpath(root_dir), "link") and found.exists


def test_symlink_loop_is_refused(root_dir):
    os.symlink("b", root_dir / "a")
    os.symlink("a", root_dir / "b")
    with pytest.raises(UnsafePath, match="too many levels of symbolic links"):
        safepath.verify(str(root_dir / "a" / "x"))


def test_a_file_in_the_middle_is_not_a_directory(root_dir):
    (root_dir / "file").write_text("")
    with pytest.raises(UnsafePath, match="is not a directory"):
        safepath.verify(str(root_dir / "file" / "x"))
