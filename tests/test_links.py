"""links kind: drbdlinks done right, on real directories (and a real mount in one test)."""
from __future__ import annotations

import os

import pytest

from conftest import run_hahooks
from storage_helpers import engine, fs_resource, is_mounted, lab, toml_value  # noqa: F401

from hahooks.errors import StepFailed, UnsafeToRelease
from hahooks.kinds.base import State


def links_resource(links: dict, **params) -> str:
    lines = ["[[resource]]", 'name = "links"', 'kind = "links"',
             f"links = {toml_value(links)}"]
    lines += [f"{k} = {toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def tree(tmp_path):
    """/etc-like originals and their replacements on 'shared' storage."""
    etc, shared = tmp_path / "etc", tmp_path / "shared"
    (etc / "nginx").mkdir(parents=True)
    (etc / "nginx" / "nginx.conf").write_text("local\n")
    (etc / "motd").write_text("local motd\n")
    (shared / "etc" / "nginx").mkdir(parents=True)
    (shared / "etc" / "nginx" / "nginx.conf").write_text("shared\n")
    (shared / "etc" / "motd").write_text("shared motd\n")
    (shared / "etc" / "new.conf").write_text("only on shared\n")
    links = {str(etc / "nginx"): str(shared / "etc" / "nginx"),
             str(etc / "motd"): str(shared / "etc" / "motd"),
             str(etc / "new.conf"): str(shared / "etc" / "new.conf")}   # no original
    return etc, shared, links


def test_round_trip_is_idempotent_and_restores_originals(tree, write_config):
    etc, shared, links = tree
    cfg = write_config(links_resource(links))
    eng, _ = engine(cfg)
    assert eng.resource(0).status().state is State.RELEASED
    eng.run("master")
    for path, target in links.items():
        assert os.readlink(path) == target
    assert (etc / "nginx" / "nginx.conf").read_text() == "shared\n"
    assert (etc / "nginx.hahooks-orig" / "nginx.conf").read_text() == "local\n"
    assert (etc / "motd.hahooks-orig").read_text() == "local motd\n"
    assert not os.path.lexists(etc / "new.conf.hahooks-orig")
    obs = eng.resource(0).status()
    assert obs.state is State.HELD and obs.reason == "3 link(s) in place" and not obs.warning
    out = eng.run("master")                       # idempotent: nothing to do
    assert [s.action for s in out.steps] == ["skip"]
    eng.run("slave")
    assert not os.path.islink(etc / "nginx")
    assert (etc / "nginx" / "nginx.conf").read_text() == "local\n"
    assert (etc / "motd").read_text() == "local motd\n"
    assert not os.path.lexists(etc / "new.conf")
    assert sorted(os.listdir(etc)) == ["motd", "nginx"]
    assert [s.action for s in eng.run("slave").steps] == ["skip"]


def test_interrupted_acquire_is_completed_or_undone(tree, write_config):
    etc, shared, links = tree
    eng, _ = engine(write_config(links_resource(links)))
    # as if a previous acquire died between the rename and the symlink
    os.rename(etc / "motd", etc / "motd.hahooks-orig")
    obs = eng.resource(0).status()
    assert obs.state is State.BROKEN and "original waits in" in obs.reason
    eng.run("master")
    assert eng.resource(0).status().state is State.HELD
    os.unlink(etc / "nginx")                     # a release died after removing one link
    assert eng.resource(0).status().state is State.BROKEN
    eng.run("slave")
    assert (etc / "nginx" / "nginx.conf").read_text() == "local\n"
    assert (etc / "motd").read_text() == "local motd\n"


def test_a_clash_is_refused_before_anything_changes(tree, write_config):
    etc, shared, links = tree
    (etc / "motd.hahooks-orig").write_text("older copy\n")
    eng, _ = engine(write_config(links_resource(links)))
    with pytest.raises(StepFailed, match="both .*motd and .*motd.hahooks-orig exist"):
        eng.run("master")
    assert not os.path.islink(etc / "nginx")       # nothing half-linked
    assert (etc / "motd.hahooks-orig").read_text() == "older copy\n"


def test_a_foreign_symlink_is_never_removed(tree, write_config):
    etc, shared, links = tree
    eng, _ = engine(write_config(links_resource(links)))
    eng.run("master")
    os.unlink(etc / "motd")
    os.symlink("/elsewhere", etc / "motd")
    obs = eng.resource(0).status()
    assert obs.state is State.BROKEN and "symlink to /elsewhere" in obs.reason
    with pytest.raises(UnsafeToRelease):
        eng.run("slave")
    assert os.readlink(etc / "motd") == "/elsewhere"


def test_missing_target_is_refused_and_dangling_link_warned(tree, write_config):
    etc, shared, links = tree
    os.unlink(shared / "etc" / "new.conf")
    eng, _ = engine(write_config(links_resource(links)))
    with pytest.raises(StepFailed, match="new.conf does not exist"):
        eng.run("master")
    assert not os.path.islink(etc / "nginx")
    (shared / "etc" / "new.conf").write_text("back\n")
    eng.run("master")
    os.unlink(shared / "etc" / "new.conf")
    obs = eng.resource(0).status()
    assert obs.state is State.HELD and "target missing" in obs.warning


def test_links_onto_a_mounted_filesystem(lab, tmp_path, write_config):
    dev = lab.image("links")
    mp = str(tmp_path / "mnt")
    etc = tmp_path / "etc"
    (etc / "app").mkdir(parents=True)
    eng, _ = engine(write_config(fs_resource("data", dev, mp) + "\n" + links_resource(
        {str(etc / "app"): f"{mp}/app"}, require_targets=False)))
    eng.run("master")
    os.makedirs(f"{mp}/app", exist_ok=True)
    (etc / "app" / "state").write_text("on the replicated fs\n")
    assert os.path.exists(f"{mp}/app/state")
    eng.run("slave")
    assert not is_mounted(mp) and os.listdir(etc / "app") == []


@pytest.mark.parametrize("links,message", [
    ({}, "expected a table"),
    ({"etc/x": "/shared/x"}, "absolute path"),
    ({"/etc/x": "/etc/x"}, "point to itself"),
    ({"/": "/shared"}, "cannot replace /"),
    ({"/etc/x": "/etc/x/y"}, "into itself"),
])
def test_bad_link_tables_are_refused(write_config, links, message):
    out = run_hahooks("check", "-c", write_config(links_resource(links)))
    assert out.returncode == 6 and message in out.stderr, out.stderr
