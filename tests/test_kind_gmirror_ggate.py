"""gmirror, ggate-attach, ggate-export and md: parsers against the reference texts
(docs/reference/gmirror.md §1, docs/reference/ggate.md §1, docs/reference/md.md §1 and seed 000's copies), then the kinds through master/slave/status on
the simulator (FreeBSD command forms forced)."""
from __future__ import annotations

import pytest

from hahooks import parsers

# docs/reference/gmirror.md §1 `gmirror status`: "%*s  %*s  %s", right-aligned Name and Status
REF_STATUS = ("      Name    Status  Components\n"
              "mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
              "                      ggate0 (SYNCHRONIZING, 42%)\n")
# docs/reference/gmirror.md §1 `gmirror status -s`: name and status repeated on every line
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
    # docs/reference/md.md §1: each name followed by a space, then a final newline; nothing at all when empty
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

from replication_helpers import (SandboxCluster, SimCluster, layer, sandbox,  # noqa: E402,F401
                                 unique, world)


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


def test_md_asks_each_question_once_per_state(tmp_path, world):
    """status() before the step, the step's own look and the confirming status() after it
    share one answer until something changes (Context.query): one `mdconfig -l` before the
    attach, one `-l`/`-lv` pair to confirm it; one pair before the detach, one `-l` after."""
    img = world.image(unique("img"), 8)
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("image", "md", file=img, unit=2))
    c.hh("nodea", "master", check=0)
    assert c.commands("nodea", "mdconfig") == [
        ["mdconfig", "-l"], ["mdconfig", "-a", "-t", "vnode", "-f", img, "-u", "2"],
        ["mdconfig", "-l"], ["mdconfig", "-lv"]]
    c.hh("nodea", "slave", check=0)
    assert c.commands("nodea", "mdconfig")[4:] == [
        ["mdconfig", "-l"], ["mdconfig", "-lv"], ["mdconfig", "-d", "-u", "2"],
        ["mdconfig", "-l"]]
    assert md_units(c, "nodea") == []
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


def test_gmirror_status_stateless_components_are_active_unless_a_percentage_shows():
    """FreeBSD <= 8 geom.c status_one_consumer() prints only <Synchronized>: a component
    without a state is ACTIVE, one with "(NN%)" is SYNCHRONIZING (docs/reference/gmirror.md)."""
    m = parsers.parse_gmirror_status(SEED_DEGRADED)["remotemirror"]
    assert [(c.provider, c.state, c.percent) for c in m.components] == [
        ("ggate0", "ACTIVE", None), ("md0", "SYNCHRONIZING", 6)]


def hand_made_mirror(c: SimCluster, name: str, *images: str, label=("md0", "md1")) -> None:
    """md0, md1... attached and `gmirror label` run by hand, as at boot before hahooks."""
    for unit, img in enumerate(images):
        assert c.run("nodea", "mdconfig", "-a", "-t", "vnode", "-f", img, "-u",
                     str(unit)).returncode == 0
    assert c.run("nodea", "gmirror", "label", "-b", "prefer", name, *label).returncode == 0


def test_gmirror_old_format_running_mirror_is_kept_with_its_data(tmp_path, world):
    """FreeBSD <= 8 prints "md0" without "(ACTIVE)": the mirror is held, and acquire keeps
    it (no label, stop, destroy or insert), its data intact."""
    world.configure(gmirror_old_format=True)
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", local_mirror_stack(img0, img1, name=name))
    hand_made_mirror(c, name, img0, img1)
    assert c.run("nodea", "gmirror", "status", "-s").stdout.split()[-1] == "md1"   # old form
    write_marker(c.dev("nodea", "mirror", name), b"kept-data")
    by_hand = len(c.commands("nodea", "gmirror"))
    c.hh("nodea", "master", check=0)
    assert {a[1] for a in c.commands("nodea", "gmirror")[by_hand:]} == {"status"}
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and f"mirror/{name} COMPLETE" in st.stdout, st.stdout
    assert read_marker(c.dev("nodea", "mirror", name), 9) == b"kept-data"
    c.assert_no_violations()


def test_gmirror_acquire_never_stops_or_relabels_a_running_mirror(tmp_path, world):
    """A mirror running (with a provider) without `prefer` in it, nothing using it: acquire
    refuses instead of `gmirror stop` + `label` from `prefer`. The rollback's release then
    records `prefer` as stale, so the next master refuses too and md1's data stay."""
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", local_mirror_stack(img0, img1, name=name))
    hand_made_mirror(c, name, img0, img1, label=("md1",))
    write_marker(c.dev("nodea", "mirror", name), b"md1-data")
    by_hand = len(c.commands("nodea", "gmirror"))
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "running without its sync source md0" in p.stderr, p.stderr
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and "last ran without md0" in p.stderr, p.stderr
    verbs = [a[1] for a in c.commands("nodea", "gmirror")[by_hand:]]
    assert not {"stop", "label", "insert"} & set(verbs), verbs
    assert read_marker(img1, 8) == b"md1-data"
    c.assert_no_violations()


def test_gmirror_acquire_waits_out_a_starting_mirror(tmp_path, world):
    """g_mirror.c: md0 tasted alone from a two-disk label is STARTING (hidden from plain
    `gmirror status`, no provider) until kern.geom.mirror.timeout; acquire waits for the
    launch and keeps the mirror instead of labelling a busy md0."""
    world.configure(gmirror_timeout=0.5)
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    hand_made_mirror(c, name, img0, img1)
    assert c.run("nodea", "gmirror", "stop", name).returncode == 0     # metadata stays
    for unit in ("0", "1"):
        assert c.run("nodea", "mdconfig", "-d", "-u", unit).returncode == 0
    c.write("nodea", layer("img0", "md", file=img0, unit=0) +
            layer("mirror", "gmirror", mirror=name, components=["md0", "md1"]))
    by_hand = len(c.commands("nodea", "gmirror"))
    c.hh("nodea", "master", check=0)
    assert not any(a[1] in ("label", "stop", "destroy")
                   for a in c.commands("nodea", "gmirror")[by_hand:])
    st = c.hh("nodea", "status")
    assert st.returncode == 1 and f"mirror/{name} DEGRADED" in st.stdout, st.stdout
    assert "md1 missing" in st.stdout
    c.assert_no_violations()


def test_gmirror_starting_mirror_without_prefer_is_stopped_and_labelled_from_prefer(
        tmp_path, world):
    """A STARTING geom has no provider yet (g_mirror.c), so nothing was served from it; when
    GEOM tasted it from leftover metadata on md1 alone (md0's was cleared by the peer's
    destroy, seed 000 failback after a crash), `gmirror status -g` shows it without
    `prefer`: acquire stops it and labels from md0, whose data win."""
    world.configure(gmirror_timeout=600)
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    hand_made_mirror(c, name, img0, img1)
    assert c.run("nodea", "gmirror", "stop", name).returncode == 0
    assert c.run("nodea", "gmirror", "clear", "md0").returncode == 0
    for unit in ("0", "1"):
        assert c.run("nodea", "mdconfig", "-d", "-u", unit).returncode == 0
    write_marker(img0, b"prefer-data")
    c.write("nodea", local_mirror_stack(img0, img1, name=name, wait_sync=True))
    by_hand = len(c.commands("nodea", "gmirror"))
    c.hh("nodea", "master", check=0)
    verbs = [a[1] for a in c.commands("nodea", "gmirror")[by_hand:] if a[1] != "status"]
    assert verbs == ["stop", "label", "insert"], verbs
    assert read_marker(c.dev("nodea", "mirror", name), 11) == b"prefer-data"
    assert read_marker(img1, 11) == b"prefer-data"          # md1 rebuilt from md0
    c.assert_no_violations()


# -- seed 000: ggated on the slave, ggatec + md + gmirror on the master ----------------------


from conftest import require_tool  # noqa: E402

A, B = "10.99.0.1", "10.99.0.2"


class Seed000:
    """Server_A (nodea, master) mirrors its image md0 with Server_B's image (nodeb) seen
    as ggate0; Server_B exports its image with ggated while it is the slave."""

    def __init__(self, tmp_path, world, lab=None, **master_mirror):
        world.add_node("nodea", A)
        world.add_node("nodeb", B)
        self.world = world
        self.mirror = unique("remotemirror")
        self.backup = world.image(unique("sitesbackup"), 16)      # on Server_B
        self.primary = world.image(unique("sitesprimary"), 16)    # on Server_A
        self.exports = tmp_path / "gg.exports"
        self.exports.write_text(f"{A} RW {self.backup}\n")
        self.c = SandboxCluster(tmp_path, world, lab) if lab else SimCluster(tmp_path, world)
        self.c.write("nodea", self.master_stack(**master_mirror))
        self.c.write("nodeb", self.slave_stack())

    def master_stack(self, **mirror) -> str:
        return (layer("remote-image", "ggate-attach", host=B, path=self.backup, unit=0,
                      connect_wait=mirror.pop("connect_wait", "5s")) +
                layer("local-image", "md", file=self.primary, unit=0) +
                layer("mirror", "gmirror", mirror=self.mirror, components=["ggate0", "md0"],
                      autosync=False, **mirror))

    def slave_stack(self) -> str:
        return (layer("export", "ggate-export", image=self.backup,
                      exports_file=str(self.exports)) +
                layer("image", "md", file=self.backup, unit=0) +
                layer("mirror", "gmirror", mirror=self.mirror, components=["md0"]))

    def mirror_dev(self, node: str) -> str:
        return self.c.dev(node, "mirror", self.mirror)

    def ggated_running(self) -> bool:
        return bool(self.world.state()["ggated"].get("nodeb"))


def write_marker(path: str, text: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_marker(path: str, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def test_seed000_failover_and_failback(tmp_path, world):
    s = Seed000(tmp_path, world, wait_sync=True)
    c = s.c
    c.hh("nodeb", "slave", check=0)                     # Server_B boots as the slave
    assert s.ggated_running()
    c.hh("nodea", "master", check=0)                    # Server_A: ggatec, md, mirror
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and f"mirror/{s.mirror} COMPLETE" in st.stdout, st.stdout
    assert "ggate0 attached to 10.99.0.2:3080" in st.stdout
    changes = [a for a in c.commands("nodea", "gmirror") if a[1] != "status"]
    assert changes == [["gmirror", "label", "-b", "prefer", "-n", s.mirror, "ggate0"],
                       ["gmirror", "insert", s.mirror, "md0"],
                       ["gmirror", "rebuild", s.mirror, "md0"]]   # seed 000's sequence
    write_marker(s.mirror_dev("nodea"), b"written-on-A")

    # 1. fail the master by hand (seed: backup_script.sh on A, master_script.sh on B)
    c.hh("nodea", "slave", check=0)
    assert c.run("nodea", "ggatec", "list").stdout == "" and \
        c.run("nodea", "gmirror", "status").stdout == ""
    c.hh("nodeb", "master", check=0)
    assert not s.ggated_running()
    assert read_marker(s.mirror_dev("nodeb"), 12) == b"written-on-A"
    write_marker(s.mirror_dev("nodeb"), b"written-on-B")

    # 2. fail back: B releases (ggated again), A relabels from ggate0 and rebuilds md0
    c.hh("nodeb", "slave", check=0)
    assert s.ggated_running() and c.run("nodeb", "mdconfig", "-l").stdout == ""
    c.hh("nodea", "master", check=0)
    assert read_marker(s.mirror_dev("nodea"), 12) == b"written-on-B"
    assert read_marker(s.primary, 12) == b"written-on-B"      # md0 rebuilt from the remote
    c.assert_no_violations()


def test_ggate_attach_retries_then_rolls_back(tmp_path, world):
    s = Seed000(tmp_path, world, connect_wait="600ms")
    p = s.c.hh("nodea", "master")                      # nodeb never started ggated
    assert p.returncode == 1, p.stderr
    assert "ggatec create" in p.stderr and "rolled back" in p.stderr
    attempts = [a for a in s.c.commands("nodea", "ggatec") if a[1] == "create"]
    assert len(attempts) >= 2                          # retried, bounded
    assert s.c.run("nodea", "mdconfig", "-l").stdout == ""
    s.c.assert_no_violations()


def test_ggate_export_refuses_while_the_image_is_attached(tmp_path, world):
    s = Seed000(tmp_path, world)
    assert s.c.run("nodeb", "mdconfig", "-a", "-t", "vnode", "-f", s.backup, "-u", "5")\
        .returncode == 0
    s.c.write("nodeb", layer("export", "ggate-export", image=s.backup,
                             exports_file=str(s.exports)))
    p = s.c.hh("nodeb", "slave")
    assert p.returncode == 1 and f"{s.backup} is attached as md5" in p.stderr, p.stderr
    assert not s.ggated_running()
    s.c.assert_no_violations()


def test_ggate_export_refuses_an_image_not_in_the_exports(tmp_path, world):
    s = Seed000(tmp_path, world)
    s.exports.write_text(f"{A} RW /somewhere/else.img\n")
    p = s.c.hh("nodeb", "slave")
    assert p.returncode == 1 and "does not export" in p.stderr and str(s.exports) in p.stderr


def test_mirror_degraded_when_the_slave_dies_is_a_warning(tmp_path, sandbox):
    """Server_B dies under a mounted mirror: ggate0's requests queue (ggatec reconnects for
    ever, docs/reference/ggate.md §4); the default io_timeout makes ggatec's guard fail them
    (sys/geom/gate/g_gate.c g_gate_guard()), gmirror drops ggate0 and the master's write
    finishes instead of hanging for ever (with ggatec's -t 0 it never would)."""
    require_tool("mkfs.ext4")
    world, lab = sandbox                       # mounts in the node's own namespace
    s = Seed000(tmp_path, world, lab, wait_sync=True)
    c = s.c
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    assert ["-t", "10"] == next(a for a in c.commands("nodea", "ggatec")
                                if a[1] == "create")[6:8]
    dev = s.mirror_dev("nodea")
    assert c.run("nodea", "mkfs.ext4", "-q", "-F", dev).returncode == 0
    mnt = tmp_path / "sites"
    mnt.mkdir()
    assert c.run("nodea", "mount", dev, str(mnt)).returncode == 0
    c.crash("nodeb")                           # seed 000 test 3: pull Server_B's cable
    # a write and its flush on the master: blocked on ggate0 until the guard fails it
    w = c.run("nodea", "sh", "-c", f"echo after > {mnt}/after-crash && sync")
    assert w.returncode == 0, w.stderr
    st = c.hh("nodea", "status")
    assert st.returncode == 1 and st.stdout.startswith("WARNING"), st.stdout
    assert "DEGRADED: ggate0 not in the mirror" in st.stdout
    # the mirror is mounted: release refuses to take it away
    p = c.hh("nodea", "slave")
    assert p.returncode == 1 and f"{dev} is mounted at {mnt}" in p.stderr, p.stderr
    assert c.run("nodea", "umount", str(mnt)).returncode == 0
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


def test_master_that_wrote_alone_refuses_to_relabel_from_the_stale_remote(tmp_path, world):
    s = Seed000(tmp_path, world, wait_sync=True)
    c = s.c
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    world.crash("nodeb")                       # Server_B dies; Server_A goes on alone
    write_marker(s.mirror_dev("nodea"), b"written-alone")
    c.hh("nodea", "slave", check=0)            # (e.g. a reboot of Server_A)
    world.restart("nodeb")
    c.hh("nodeb", "slave", check=0)            # Server_B back: ggated serves its old copy
    p = c.hh("nodea", "master")
    assert p.returncode == 1, p.stderr
    assert "last ran without ggate0" in p.stderr and "would discard them" in p.stderr
    assert not any(a[1] == "label" for a in c.commands("nodea", "gmirror")[-3:])
    assert read_marker(s.primary, 13) == b"written-alone"      # nothing overwritten
    c.assert_no_violations()


def test_md_detach_refused_while_mounted_in_another_namespace(tmp_path, world):
    """Issue 17: /dev/mdN mounted only in another mount namespace (an `unshare -m` shell).
    The old code refused too, but only after LOOP_SETTLE, as "attached to /dev/loopN",
    naming no process; now it refuses at once naming the namespace and its process, and a
    re-run after that process is gone detaches."""
    import signal
    import subprocess
    import time

    from conftest import require_root, require_tool
    from storage_helpers import alive, sh

    require_root()
    require_tool("unshare", "mkfs.ext4", "mount")
    img = world.image(unique("img"), 16)
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("image", "md", file=img, unit=4))
    c.hh("nodea", "master", check=0)
    dev, mp, ready = c.dev("nodea", "md4"), tmp_path / "theirs", tmp_path / "ns-ready"
    sh("mkfs.ext4", "-q", "-F", dev)
    mp.mkdir()
    ns = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-ec",
                           f"mount {dev} {mp}; : > {ready}; exec sleep 600"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert ns.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        out = c.hh("nodea", "slave")
        assert out.returncode == 1, out.stderr
        assert "mount namespace" in out.stderr and f"pid {ns.pid}" in out.stderr, out.stderr
        assert md_units(c, "nodea") == ["md4"]
    finally:
        if ns.poll() is None:
            os.kill(ns.pid, signal.SIGKILL)
        ns.wait(timeout=10)
    assert not alive(ns.pid)
    c.hh("nodea", "slave", check=0)
    assert md_units(c, "nodea") == []
