"""gmirror, ggate-attach, ggate-export and md: parsers against the reference texts
(freebsd-tools.md §4 and seed 000's copies), then the kinds through master/slave/status on
the simulator (FreeBSD command forms forced)."""
from __future__ import annotations

import pytest

from hahooks import parsers

# §4 `gmirror status`: "%*s  %*s  %s", right-aligned Name and Status
REF_STATUS = ("      Name    Status  Components\n"
              "mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
              "                      ggate0 (SYNCHRONIZING, 42%)\n")
# §4 `gmirror status -s`: name and status repeated on every line
REF_STATUS_S = ("mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
                "mirror/gm0  DEGRADED  ggate0 (SYNCHRONIZING, 42%)\n")
# seed 000 (whitespace collapsed by the web page), FreeBSD 7's "(6%)" without a state
SEED_COMPLETE = "Name Status Components\nmirror/remotemirror COMPLETE md0\nggate0\n"
SEED_DEGRADED = "Name Status Components\nmirror/remotemirror DEGRADED ggate0\nmd0 (6%)\n"


@pytest.mark.parametrize("text", [REF_STATUS, REF_STATUS_S])
def test_gmirror_status_reference_forms(text):
    m = parsers.parse_gmirror_status(text)["gm0"]
    assert m.status == "DEGRADED"
    assert [(c.provider, c.state, c.percent) for c in m.components] == [
        ("ada0", "ACTIVE", None), ("ggate0", "SYNCHRONIZING", 42)]


def test_gmirror_status_seed000_forms():
    m = parsers.parse_gmirror_status(SEED_COMPLETE)["remotemirror"]
    assert m.status == "COMPLETE" and [c.provider for c in m.components] == ["md0", "ggate0"]
    m = parsers.parse_gmirror_status(SEED_DEGRADED)["remotemirror"]
    assert m.status == "DEGRADED"
    assert (m.components[1].provider, m.components[1].percent) == ("md0", 6)


def test_gmirror_status_several_mirrors_and_empty():
    text = ("      Name    Status  Components\n"
            "mirror/gm0  COMPLETE  ada0 (ACTIVE)\n"
            "                      ada1 (ACTIVE)\n"
            "mirror/big  STARTING  ada2 (ACTIVE)\n")
    got = parsers.parse_gmirror_status(text)
    assert [c.provider for c in got["gm0"].components] == ["ada0", "ada1"]
    assert got["big"].status == "STARTING"
    assert parsers.parse_gmirror_status("") == {}


def test_mdconfig_list_trailing_space():
    # §4: each name followed by a space, then a final newline; nothing at all when empty
    assert parsers.parse_mdconfig_list("md0 md1 \n") == ["md0", "md1"]
    assert parsers.parse_mdconfig_list("md0 \n") == ["md0"]      # seed 000 compared to "md0"
    assert parsers.parse_mdconfig_list("") == []


def test_mdconfig_verbose():
    old = "md0\tvnode\t  500M\t/root/images/sitesprimary.img\n"
    new = "md1\tvnode\t   64M\t/img/b.img\t-\t-\n"
    got = parsers.parse_mdconfig_verbose(old + new)
    assert (got["md0"].type, got["md0"].size.strip(), got["md0"].path) == \
        ("vnode", "500M", "/root/images/sitesprimary.img")
    assert got["md1"].path == "/img/b.img"


def test_ggatec_list_plain_and_verbose():
    assert parsers.parse_ggatec_list("ggate0\nggate1\n") == {
        "ggate0": {"NAME": "ggate0"}, "ggate1": {"NAME": "ggate1"}}
    verbose = ("       NAME: ggate0\n"
               "       info: 192.168.1.101:3080 /root/images/sitesbackup.img\n"
               "     access: r1w1e1\n"
               "    timeout: 0\n"
               "queue_count: 0\n"
               " queue_size: 1024\n"
               " references: 1\n"
               "  mediasize: 524288000 (500M)\n"
               " sectorsize: 512\n"
               "       mode: 600\n"
               "\n")
    got = parsers.parse_ggatec_list(verbose)
    assert got["ggate0"]["info"] == "192.168.1.101:3080 /root/images/sitesbackup.img"
    assert got["ggate0"]["mediasize"] == "524288000 (500M)"


# -- through the CLI on the simulator ----------------------------------------------------

import os  # noqa: E402

from replication_helpers import SimCluster, unique  # noqa: E402


@pytest.fixture
def world(tmp_path):
    from hahooks.sim import World

    w = World(str(tmp_path / "world"))
    yield w
    w.close()


def layer(name: str, kind: str, **params) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return f'"{v}"'
    return f'\n[[resource]]\nname = "{name}"\nkind = "{kind}"\n' + \
        "".join(f"{k} = {value(v)}\n" for k, v in params.items())


def md_units(c: SimCluster, node: str) -> list[str]:
    return c.run(node, "mdconfig", "-l").stdout.split()


def test_md_attach_detach_and_foreign_unit(tmp_path, world):
    img, other = world.image(unique("img"), 8), world.image(unique("img"), 8)
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("image", "md", file=img, unit=3))
    c.hh("nodea", "master", check=0)
    assert md_units(c, "nodea") == ["md3"] and os.path.exists(c.dev("nodea", "md3"))
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and f"md3 is a vnode on {img}" in st.stdout, st.stdout
    c.hh("nodea", "slave", check=0)
    assert md_units(c, "nodea") == []
    # the unit taken by another image: broken, and master refuses to touch it
    assert c.run("nodea", "mdconfig", "-a", "-t", "vnode", "-f", other, "-u", "3").returncode == 0
    st = c.hh("nodea", "status")
    assert st.returncode == 2 and f"not a vnode on {img}" in st.stdout, st.stdout
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "already attached" in p.stderr
    assert c.run("nodea", "mdconfig", "-lv").stdout.strip().endswith(other)
    c.assert_no_violations()


def local_mirror_stack(img0: str, img1: str, **mirror) -> str:
    return (layer("img0", "md", file=img0, unit=0) + layer("img1", "md", file=img1, unit=1) +
            layer("mirror", "gmirror", mirror=mirror.pop("name"), components=["md0", "md1"],
                  **mirror))


def test_gmirror_label_insert_status_destroy(tmp_path, world):
    world.configure(gmirror_sync_rate=1024)       # a rebuild that lasts: SYNCHRONIZING
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", local_mirror_stack(img0, img1, name=name))
    c.hh("nodea", "master", check=0)                # does not wait for the rebuild
    assert os.path.exists(c.dev("nodea", "mirror", name))
    gm = c.commands("nodea", "gmirror")
    assert ["gmirror", "label", "-b", "prefer", name, "md0"] in gm
    assert ["gmirror", "insert", name, "md1"] in gm
    st = c.hh("nodea", "status")
    assert st.returncode == 1 and st.stdout.startswith("WARNING"), st.stdout
    assert "DEGRADED: md1 SYNCHRONIZING" in st.stdout and "%" in st.stdout
    c.hh("nodea", "slave", check=0)
    assert c.run("nodea", "gmirror", "status").stdout == ""
    assert ["gmirror", "destroy", name] in c.commands("nodea", "gmirror")
    c.assert_no_violations()


def test_gmirror_complete_is_ok_and_autosync_false_rebuilds(tmp_path, world):
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", local_mirror_stack(img0, img1, name=name, autosync=False,
                                        wait_sync=True))
    c.hh("nodea", "master", check=0)
    gm = c.commands("nodea", "gmirror")
    assert ["gmirror", "label", "-b", "prefer", "-n", name, "md0"] in gm
    assert ["gmirror", "rebuild", name, "md1"] in gm
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and f"mirror/{name} COMPLETE" in st.stdout, st.stdout
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


def test_gmirror_refuses_without_its_sync_source(tmp_path, world):
    img1 = world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("img1", "md", file=img1, unit=1) +
            layer("mirror", "gmirror", mirror=name, components=["md0", "md1"]))
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "sync source" in p.stderr and "md0 does not exist" in p.stderr
    assert md_units(c, "nodea") == []                 # rolled back
    c.assert_no_violations()


def test_gmirror_prefer_must_be_a_component(tmp_path, world):
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("mirror", "gmirror", mirror="gm0", components=["md0"],
                           prefer="md1"))
    p = c.hh("nodea", "check")
    assert p.returncode == 6 and "prefer" in p.stderr and "nodea.toml:" in p.stderr
