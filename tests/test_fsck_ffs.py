"""FreeBSD fsck_ffs exit codes and the "PLEASE RERUN FSCK" request (docs/reference/fsck.md;
sbin/fsck_ffs/main.c main(), checkfilesys(); fsck.h; sbin/fsck/fsck.c checkfs()).

fsck_ffs exists only on FreeBSD, so these tests put a small fake of it on PATH, behind a fake
fsck(8) front that, like the real one, runs fsck_<type> and exits with its status. The fake
prints what checkfilesys() prints in preen mode and follows a per-test plan of answers.
"""
from __future__ import annotations

import os
import stat

import pytest

from storage_helpers import engine, fs_resource, is_mounted, lab, ran  # noqa: F401

from hahooks import config as config_mod
from hahooks import fsck
from hahooks.errors import StepFailed
from hahooks.kinds.base import Context
from hahooks.runner import Runner

# fsck(8): `fsck -p|-y -t TYPE DEV` runs fsck_TYPE with the same flags (checkfs())
FSCK_FRONT = """#!/bin/sh
flags=""; type=ufs
while [ $# -gt 1 ]; do
  case "$1" in -t) type=$2; shift 2;; *) flags="$flags $1"; shift;; esac
done
exec fsck_$type $flags "$1"
"""

# fsck_ufs: answer number N of the plan ("clean 0" or "rerun CODE"; the last line repeats)
FSCK_UFS = """#!/bin/sh
here=$(dirname "$0")
for a; do dev=$a; done
n=$(($(cat "$here/runs" 2>/dev/null || echo 0) + 1)); echo $n > "$here/runs"
line=$(sed -n "${n}p" "$here/plan"); [ -n "$line" ] || line=$(tail -n 1 "$here/plan")
set -- $line
if [ "$1" = clean ]; then
  echo "$dev: FILE SYSTEM CLEAN; SKIPPING CHECKS"
  echo "$dev: clean, 20023 free (23 frags, 2500 blocks, 0.1% fragmentation)"
else
  echo "$dev: 3 files, 9 used, 20014 free (22 frags, 2499 blocks, 0.1% fragmentation)"
  printf '\\n***** PLEASE RERUN FSCK *****\\n'
fi
exit $2
"""


@pytest.fixture
def fake_fsck_ffs(tmp_path, monkeypatch):
    """fake_fsck_ffs(plan) -> the bin dir; its file `runs` counts fsck_ufs runs."""
    bindir = tmp_path / "freebsd-sbin"
    bindir.mkdir()
    for name, text in (("fsck", FSCK_FRONT), ("fsck_ufs", FSCK_UFS)):
        path = bindir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    def with_plan(*answers: str):
        (bindir / "plan").write_text("\n".join(answers) + "\n")
        return bindir
    return with_plan


def runs(bindir) -> int:
    return int((bindir / "runs").read_text())


def freebsd_ctx() -> Context:
    cfg = config_mod.parse({"node": {"platform": "freebsd"}, "resource": [
        {"name": "x", "kind": "command", "acquire": ["true"], "release": ["true"],
         "status": ["true"]}]})
    return Context(runner=Runner(cfg.node.platform), node=cfg.node)


@pytest.mark.parametrize("code,verdict,words", [
    (0, "ok", "clean"), (2, "error", "SIGQUIT"), (3, "error", "superblock"),
    (4, "error", "mounted"), (8, "manual", "manual fsck"), (12, "error", "SIGINT"),
    (16, "rerun", "ERERUN")])
def test_fsck_ffs_exit_codes_as_main_c_and_fsck_h_define_them(code, verdict, words):
    """main.c: 2 returntosingle (SIGQUIT), 3 unreadable superblock, 4 mounted fs modified and
    reload failed, 8 EEXIT, 12 catch() on SIGINT, 16 ERERUN (checkfilesys(), FreeBSD 14)."""
    got = fsck.judge_freebsd(code)
    assert got[0] == verdict and words in got[1], got


def test_fsck_ffs_rerun_banner_with_exit_0_runs_fsck_once_more(fake_fsck_ffs):
    """checkfilesys() of older releases prints PLEASE RERUN FSCK and returns 0: fsck again,
    and the second (clean) answer counts."""
    bindir = fake_fsck_ffs("rerun 0", "clean 0")
    summary = fsck.check(freebsd_ctx(), "/dev/ada0p2", "ufs", "preen")
    assert runs(bindir) == 2 and summary == "fsck /dev/ada0p2: clean"


def test_fsck_ffs_ererun_exit_16_runs_fsck_once_more(fake_fsck_ffs):
    """checkfilesys() in FreeBSD 14: `return (rerun ? ERERUN : 0)` after the banner."""
    bindir = fake_fsck_ffs("rerun 16", "clean 0")
    summary = fsck.check(freebsd_ctx(), "/dev/ada0p2", "ufs", "preen")
    assert runs(bindir) == 2 and summary == "fsck /dev/ada0p2: clean"


@pytest.mark.parametrize("code", [0, 16])
def test_fsck_ffs_asking_to_rerun_twice_is_not_clean_and_nothing_is_mounted(
        fake_fsck_ffs, lab, write_config, tmp_path, code):
    """A second PLEASE RERUN FSCK (either exit form): not known to be consistent, so the
    filesystem is reported as an error, fsck is not run a third time, and mount never runs."""
    bindir = fake_fsck_ffs(f"rerun {code}")
    dev = lab.image("ufs")
    mp = str(tmp_path / "mnt")
    cfg = write_config(fs_resource("data", dev, mp, fstype="ufs", fsck="preen"),
                       'platform = "freebsd"\n')
    eng, runner = engine(cfg)
    with pytest.raises(StepFailed, match="twice in a row"):
        eng.run("master")
    assert runs(bindir) == 2
    assert ran(runner, "fsck") == [["fsck", "-p", "-t", "ufs", dev]] * 2
    assert ran(runner, "mount") == [] and not is_mounted(mp)
