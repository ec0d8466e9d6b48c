"""Parallel groups (`parallel = "GROUP"`): consecutive independent layers acquired and
released together, on real loop-backed ext4 filesystems. Nothing here asserts on time:
concurrency is shown by two layers that can only finish if they run at the same time."""
from __future__ import annotations

import os

import pytest

from conftest import run_hahooks
from storage_helpers import HOLD_CWD, alive, engine, fs_resource, is_mounted, lab  # noqa: F401

from hahooks import config, holderscan
from hahooks.errors import ConfigError, StepFailed, UnsafeToRelease
from hahooks.kinds.base import State


def base_layer(tmp_path) -> str:
    """A command layer below the group: held = its flag file exists."""
    flag = tmp_path / "base.flag"
    return ("[[resource]]\nname = \"base\"\nkind = \"command\"\n"
            f"acquire = [\"touch\", \"{flag}\"]\nrelease = [\"rm\", \"-f\", \"{flag}\"]\n"
            f"status = [\"test\", \"-e\", \"{flag}\"]\n\n")


def fs_group(lab, tmp_path, names, group="mounts", **params) -> tuple[str, dict]:
    body, mps = "", {}
    for name in names:
        dev = lab.image(name, size_mb=16)
        mps[name] = str(tmp_path / "mnt" / name)
        body += fs_resource(name, dev, mps[name], parallel=group, fstype="ext4",
                            **params) + "\n"
    return body, mps


def test_group_acquires_and_releases_every_member(lab, write_config, tmp_path):
    body, mps = fs_group(lab, tmp_path, ["fa", "fb", "fc"])
    cfg = write_config(base_layer(tmp_path) + body + fs_resource(
        "top", lab.image("top", size_mb=16), str(tmp_path / "mnt" / "fa" / "top")))
    eng, _ = engine(cfg)
    assert eng.groups() == [[0], [1, 2, 3], [4]]
    eng.run("master")
    assert all(is_mounted(mp) for mp in mps.values())
    assert is_mounted(str(tmp_path / "mnt" / "fa" / "top"))   # the layer above the group
    assert [o.state for _, o in eng.observe()] == [State.HELD] * 5
    again = eng.run("master")
    assert [s.action for s in again.steps] == ["skip"] * 5
    eng.run("slave")
    assert not any(is_mounted(mp) for mp in mps.values())
    assert [o.state for _, o in eng.observe()] == [State.RELEASED] * 5


def test_members_really_run_at_the_same_time(write_config, tmp_path):
    """Each member's acquire waits for the other's mark: run one after the other, the
    first would give up (exit 1) before the second started."""
    d = tmp_path

    def member(me: str, other: str) -> str:
        script = (f"touch {d}/{me}; i=0; while [ ! -e {d}/{other} ]; do sleep 0.02; "
                  "i=$((i+1)); [ $i -gt 500 ] && exit 1; done; touch " + f"{d}/{me}.held")
        return (f"[[resource]]\nname = \"{me}\"\nkind = \"command\"\nparallel = \"pair\"\n"
                f"acquire = [\"sh\", \"-c\", \"{script}\"]\n"
                f"release = [\"rm\", \"-f\", \"{d}/{me}.held\"]\n"
                f"status = [\"test\", \"-e\", \"{d}/{me}.held\"]\n\n")
    cfg = write_config(member("a", "b") + member("b", "a"))
    run_hahooks("master", "-c", cfg, check=0)
    assert (d / "a.held").exists() and (d / "b.held").exists()
    run_hahooks("slave", "-c", cfg, check=0)
    assert not (d / "a.held").exists()


def test_a_failing_member_rolls_back_the_group_and_the_layers_below(lab, write_config,
                                                                     tmp_path):
    body, mps = fs_group(lab, tmp_path, ["ga", "gb"])
    missing = fs_resource("gc", str(tmp_path / "no-such-device"), str(tmp_path / "mnt" / "gc"),
                          parallel="mounts", device_timeout="1s")
    cfg = write_config(base_layer(tmp_path) + body + missing)
    eng, _ = engine(cfg)
    with pytest.raises(StepFailed) as err:
        eng.run("master")
    assert "acquire gc failed" in str(err.value) and "rolled back" in str(err.value)
    # the members that were mounted meanwhile are unmounted again, and the base released
    assert not any(is_mounted(mp) for mp in mps.values())
    assert not (tmp_path / "base.flag").exists()


def test_release_stops_safely_when_one_member_stays_busy(lab, write_config, tmp_path):
    body, mps = fs_group(lab, tmp_path, ["ha", "hb"])
    stubborn_dev = lab.image("hc", size_mb=16)
    stubborn = str(tmp_path / "mnt" / "hc")
    body += fs_resource("hc", stubborn_dev, stubborn, parallel="mounts", fstype="ext4",
                        kill_holders=False, timeout="1s")
    cfg = write_config(base_layer(tmp_path) + body)
    eng, _ = engine(cfg)
    eng.run("master")
    ready = str(tmp_path / "ready")
    holder = lab.spawn(HOLD_CWD.format(ready=ready), cwd=stubborn, ready=ready)
    with pytest.raises(UnsafeToRelease) as err:
        eng.run("slave")
    assert "release hc failed" in str(err.value) and f"pid {holder.pid}" in str(err.value)
    # the other members finished their release; the one still busy keeps its device and
    # the layer below the group was not touched
    assert not any(is_mounted(mp) for mp in mps.values())
    assert is_mounted(stubborn) and alive(holder)
    assert (tmp_path / "base.flag").exists()


def test_busy_members_share_one_holder_scan(lab, write_config, tmp_path):
    body, mps = fs_group(lab, tmp_path, ["sa", "sb", "sc"], stop_grace="5s")
    cfg = write_config(body)
    eng, _ = engine(cfg)
    eng.run("master")
    holders = {}
    for name in ("sa", "sc"):
        ready = str(tmp_path / f"ready-{name}")
        holders[name] = lab.spawn(HOLD_CWD.format(ready=ready), cwd=mps[name], ready=ready)
    eng.run("slave")
    assert not any(is_mounted(mp) for mp in mps.values())
    assert not any(alive(p) for p in holders.values())
    assert [s.scans for s in eng.holder_scans] == [1]


def test_holders_by_mount_attributes_each_holder_to_its_own_mount(lab, tmp_path):
    from storage_helpers import sh

    mps = {}
    for name in ("xa", "xb"):
        mps[name] = str(tmp_path / name)
        os.makedirs(mps[name])
        sh("mount", lab.image(name, size_mb=16), mps[name])
    ra, rb = str(tmp_path / "ra"), str(tmp_path / "rb")
    pa = lab.spawn(HOLD_CWD.format(ready=ra), cwd=mps["xa"], ready=ra)
    pb = lab.spawn(HOLD_CWD.format(ready=rb), cwd=mps["xb"], ready=rb)
    # a process in the parent directory holds neither
    rp = str(tmp_path / "rp")
    parent = lab.spawn(HOLD_CWD.format(ready=rp), cwd=str(tmp_path), ready=rp)
    found = holderscan.holders_by_mount({mps["xa"]: None, mps["xb"]: None})
    assert {p.pid for p in found[mps["xa"]]} == {pa.pid}
    assert {p.pid for p in found[mps["xb"]]} == {pb.pid}
    assert parent.pid not in {p.pid for f in found.values() for p in f}
    assert {p.pid for p in holderscan.holders([mps["xa"]])} == {pa.pid}


def test_dry_run_plan_lists_every_member_with_its_group(lab, write_config, tmp_path):
    body, mps = fs_group(lab, tmp_path, ["pa", "pb"])
    cfg = write_config(base_layer(tmp_path) + body)
    plan = run_hahooks("plan", "master", "-c", cfg, check=0).stdout
    assert "pa (filesystem, parallel mounts)" in plan and "pb (filesystem, parallel mounts)" in plan
    assert plan.index("base") < plan.index("pa") < plan.index("pb")
    dry = run_hahooks("master", "--dry-run", "-c", cfg, check=0)
    text = dry.stdout + dry.stderr
    for name in ("pa", "pb"):
        assert f"mount -t ext4 {lab.loops[list(mps).index(name)]} {mps[name]}" in text
    assert not any(is_mounted(mp) for mp in mps.values())


def test_config_refuses_a_group_that_is_not_consecutive(write_config, tmp_path):
    def cmd(name, group=None):
        extra = f"parallel = \"{group}\"\n" if group else ""
        return (f"[[resource]]\nname = \"{name}\"\nkind = \"command\"\n{extra}"
                f"acquire = [\"true\"]\nrelease = [\"true\"]\nstatus = [\"true\"]\n\n")
    cfg = write_config(cmd("a", "g") + cmd("b") + cmd("c", "g"))
    with pytest.raises(ConfigError) as err:
        config.load(cfg)
    msg = str(err.value)
    lines = open(cfg).read().splitlines()
    line = lines.index('parallel = "g"', lines.index('name = "c"')) + 1
    assert f"hahooks.toml:{line}: resource 'c': parallel: group 'g' must be consecutive" in msg
    bad = write_config(cmd("a", "two words"), name="bad.toml")
    proc = run_hahooks("check", "-c", bad, check=6)
    assert "bad.toml:" in proc.stderr and "parallel" in proc.stderr and \
        "'two words'" in proc.stderr
    ok = config.load(write_config(cmd("a", "g") + cmd("b", "g") + cmd("c", "h"),
                                  name="ok.toml"))
    assert [r.parallel for r in ok.resources] == ["g", "g", "h"]


def test_each_member_joins_the_shared_scan_before_any_release(lab, write_config, tmp_path):
    """The filesystem kind registers its own mount (join_group_release): one /proc pass then
    answers for every member, whichever asks first; the engine names no mountpoint."""
    from hahooks import parallel

    body, mps = fs_group(lab, tmp_path, ["ja", "jb"])
    eng, _ = engine(write_config(body))
    eng.run("master")
    eng.holder_scan = holderscan.SharedScan()
    try:
        parallel.join_scan([eng.resource(i) for i in eng.groups()[0]])
        for mp in mps.values():
            assert eng.holder_scan.holders(mp, 0) == ({}, 1)
        assert eng.holder_scan.scans == 1
    finally:
        eng.holder_scan = None
        eng.run("slave")
    assert not any(is_mounted(mp) for mp in mps.values())
