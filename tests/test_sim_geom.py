"""Simulated gmirror, ggatec/ggated and mdconfig against docs/reference/gmirror.md, docs/reference/ggate.md and docs/reference/md.md."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import require_root, require_tool
from hahooks import waits
from test_sim_support import make_world

USAGE_GGATEC = (
    "usage: ggatec create [-nv] [-o <ro|wo|rw>] [-p port] [-q queue_size] [-R rcvbuf] "
    "[-S sndbuf] [-s sectorsize] [-t timeout] [-u unit] <host> <path>\n"
    "       ggatec rescue [-nv] [-o <ro|wo|rw>] [-p port] [-R rcvbuf] [-S sndbuf] "
    "<-u unit> <host> <path>\n"
    "       ggatec destroy [-f] <-u unit>\n"
    "       ggatec list [-v] [-u unit]\n")


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path, servera="192.168.1.101", serverb="192.168.1.102")
    yield w
    w.close()


def export(world, tmp_path, node="serverb", size_mb=8, name="sitesbackup.img") -> str:
    """ggated on `node` exporting one image to 192.168.1.0/24; returns the image path."""
    image = world.image(name, size_mb)
    exports = tmp_path / f"gg.exports.{node}"
    exports.write_text(f"# seed 000\n192.168.1.0/24 RW {image}\n")
    r = world.run(node, "ggated", str(exports))
    assert r.returncode == 0, r.stderr
    return image


def plain_disk(world, node: str, name: str, size_mb: int = 8) -> str:
    """A provider that is just a file in the node's dev dir (like ada0)."""
    path = os.path.join(world.dev_dir(node), name)
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    return path


def test_gmirror_status_format_reference_4(world, tmp_path):
    """docs/reference/gmirror.md §1 `gmirror status`: "%*s  %*s  %s" widths from the longest Name/Status, components
    `prov (ACTIVE)` and `prov (SYNCHRONIZING, NN%)`, continuation lines blank-padded."""
    world.configure(gmirror_sync_rate=1)          # hold the rebuild where we put it
    plain_disk(world, "servera", "ada0")
    image = export(world, tmp_path)
    assert world.run("servera", "ggatec", "create", "192.168.1.102", image).stdout == "ggate0\n"
    assert world.run("servera", "gmirror", "label", "gm0", "ada0").returncode == 0
    assert world.run("servera", "gmirror", "insert", "gm0", "ggate0").returncode == 0
    world.set_gmirror_progress("servera", "gm0", "ggate0", 42)
    r = world.run("servera", "gmirror", "status")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == ("      Name    Status  Components\n"
                        "mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
                        "                      ggate0 (SYNCHRONIZING, 42%)\n")
    # -s drops the header and repeats name and status on every line
    assert world.run("servera", "gmirror", "status", "-s").stdout == (
        "mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
        "mirror/gm0  DEGRADED  ggate0 (SYNCHRONIZING, 42%)\n")


def test_gmirror_complete_and_minimum_widths_reference_4(world):
    """docs/reference/gmirror.md §2: COMPLETE when all disks are ACTIVE; label stores metadata (-v prints it); a
    synchronisation starts at 0% and ends ACTIVE; no mirror at all prints nothing."""
    assert world.run("servera", "gmirror", "status").stdout == ""
    plain_disk(world, "servera", "ada0")
    plain_disk(world, "servera", "ada1")
    r = world.run("servera", "gmirror", "label", "-v", "m", "ada0")
    assert (r.returncode, r.stdout) == (0, "Metadata value stored on ada0.\n")
    assert world.run("servera", "gmirror", "status").stdout == (
        "    Name    Status  Components\n"
        "mirror/m  COMPLETE  ada0 (ACTIVE)\n")
    world.configure(gmirror_sync_rate=1)
    world.run("servera", "gmirror", "insert", "m", "ada1")
    assert "ada1 (SYNCHRONIZING, 0%)" in world.run("servera", "gmirror", "status").stdout
    world.configure(gmirror_sync_rate=1 << 40)    # let it finish
    assert world.run("servera", "gmirror", "status").stdout.splitlines()[1:] == [
        "mirror/m  COMPLETE  ada0 (ACTIVE)", " " * 20 + "ada1 (ACTIVE)"]


def test_gmirror_errors_reference_4_verbs(world):
    """gmirror verbs exit 1 with geom's "gmirror: <kernel message>" (g_mirror_ctl.c)."""
    plain_disk(world, "servera", "ada0")
    cases = [
        (["insert", "nosuch", "ada0"], "gmirror: No such device: nosuch.\n"),
        (["label", "m"], "gmirror: Too few arguments.\n"),
        (["label", "m", "ada9"], "gmirror: Can't get informations about ada9: "
                                 "No such file or directory.\n"),
        (["label", "-b", "fastest", "m", "ada0"], "gmirror: Invalid balance algorithm.\n"),
    ]
    for argv, err in cases:
        r = world.run("servera", "gmirror", *argv)
        assert (r.returncode, r.stderr) == (1, err), argv
    world.run("servera", "gmirror", "label", "m", "ada0")
    r = world.run("servera", "gmirror", "rebuild", "m", "ada0")
    assert r.stderr == "gmirror: Provider ada0 is the last active provider in m.\n"
    r = world.run("servera", "gmirror", "label", "other", "ada0")
    assert r.stderr == "gmirror: Can't store metadata on ada0: Operation not permitted.\n"
    r = world.run("servera", "gmirror", "rebuild", "m", "ada7")
    assert r.stderr == "gmirror: No such provider: ada7.\n"


def test_ggatec_create_prints_unit_and_list_reference_4(world, tmp_path):
    """docs/reference/ggate.md §1 ggatec: create without -u prints `ggate0`; list prints one name per line; list -v
    the right-aligned block; destroy without -u: `Required unit number.` + usage."""
    image = export(world, tmp_path)
    r = world.run("servera", "ggatec", "create", "192.168.1.102", image)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ggate0\n", "")
    with open(image, "r+b") as f:
        f.write(b"exported bytes")
    with open(os.path.join(world.dev_dir("servera"), "ggate0"), "rb") as f:
        assert f.read(14) == b"exported bytes"      # the device shows the server's file
    r = world.run("servera", "ggatec", "create", "-u", "5", "192.168.1.102", image)
    assert (r.returncode, r.stdout) == (0, "")      # with -u nothing is printed
    assert world.run("servera", "ggatec", "list").stdout == "ggate0\nggate5\n"
    assert world.run("servera", "ggatec", "list", "-v", "-u", "0").stdout == (
        "       NAME: ggate0\n"
        f"       info: 192.168.1.102:3080 {image}\n"
        "     access: read-write\n"
        "    timeout: 0\n"
        "queue_count: 0\n"
        " queue_size: 1024\n"
        " references: 0\n"
        "  mediasize: 8388608 (8.0M)\n"
        " sectorsize: 512\n"
        "       mode: r0w0e0\n"
        "\n")
    r = world.run("servera", "ggatec", "destroy")
    assert (r.returncode, r.stderr) == (1, "Required unit number.\n" + USAGE_GGATEC)
    assert world.run("servera", "ggatec", "destroy", "-u", "5").returncode == 0


def test_ggatec_destroy_busy_goes_to_stdout_reference_4(world, tmp_path):
    """docs/reference/ggate.md §2: destroy is verbose, so `error: ggatec: ioctl(/dev/ggctl): Device busy.` and
    `error: Exiting.` go to stdout, exit 1 (here: ggate0 is a mirror component)."""
    image = export(world, tmp_path)
    world.run("servera", "ggatec", "create", "192.168.1.102", image)
    world.run("servera", "gmirror", "label", "remotemirror", "ggate0")
    r = world.run("servera", "ggatec", "destroy", "-u", "0")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "error: ggatec: ioctl(/dev/ggctl): Device busy.\nerror: Exiting.\n", "")
    r = world.run("servera", "ggatec", "destroy", "-u", "3")
    assert r.stdout == "error: ggatec: ioctl(/dev/ggctl): Device not configured.\nerror: Exiting.\n"


def test_ggatec_refused_without_export(world, tmp_path):
    """No ggated: create fails, silently (syslog) unless -v, exit 1; path must match the
    exports line exactly."""
    image = world.image("x.img", 4)
    r = world.run("servera", "ggatec", "create", "192.168.1.102", image)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")
    r = world.run("servera", "ggatec", "create", "-v", "192.168.1.102", image)
    assert r.stdout == "error: Cannot connect: Connection refused.\nerror: Exiting.\n"
    export(world, tmp_path)
    r = world.run("servera", "ggatec", "create", "-v", "192.168.1.102", image)
    assert r.stdout == "error: Cannot connect: Operation not permitted.\nerror: Exiting.\n"


def test_mdconfig_list_trailing_space_reference_4(world):
    """docs/reference/md.md §1 mdconfig: -a prints `md0`; -l prints each name followed by a space, then one
    newline (`md0 md1 \\n`), nothing at all without units; -lv one line per unit."""
    assert world.run("servera", "mdconfig", "-l").stdout == ""
    a, b = world.image("a.img", 64), world.image("b.img", 8)
    assert world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", a).stdout == "md0\n"
    assert world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", b).stdout == "md1\n"
    assert world.run("servera", "mdconfig", "-l").stdout == "md0 md1 \n"
    assert world.run("servera", "mdconfig", "-lv").stdout == (
        f"md0\tvnode\t   64M\t{a}\nmd1\tvnode\t 8192K\t{b}\n")  # humanize_number len 6
    r = world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", a, "-u", "1")
    assert (r.returncode, r.stderr) == (1, "mdconfig: ioctl(/dev/mdctl): Device busy\n")
    assert world.run("servera", "mdconfig", "-d", "-u", "0").returncode == 0
    assert world.run("servera", "mdconfig", "-l").stdout == "md1 \n"
    r = world.run("servera", "mdconfig", "-d", "-u", "0")
    assert r.stderr == "mdconfig: ioctl(/dev/mdctl): No such file or directory\n"
    assert world.run("servera", "mdconfig", "-d").returncode == 1     # usage


def test_mdconfig_detach_busy_while_mirrored(world):
    """A unit GEOM holds open (mirror component) cannot be detached without -o force."""
    a = world.image("a.img", 8)
    world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", a)
    world.run("servera", "gmirror", "label", "m", "md0")
    r = world.run("servera", "mdconfig", "-d", "-u", "0")
    assert (r.returncode, r.stderr) == (1, "mdconfig: ioctl(/dev/mdctl): Device busy\n")


def test_seed000_mirror_data_reaches_the_remote_image(world, tmp_path):
    """Seed 000's master: label on ggate0 (serverb's image), insert + rebuild md0 (local),
    write through /dev/mirror/remotemirror. The writes a synchronous mirror sent to ggate0
    are in serverb's image after deactivate, so serverb serves them after failover."""
    backup = export(world, tmp_path)
    primary = world.image("sitesprimary.img", 8)
    world.run("servera", "ggatec", "create", "192.168.1.102", backup)
    world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", primary)
    assert world.run("servera", "gmirror", "label", "-v", "-n", "-b", "prefer",
                     "remotemirror", "ggate0").returncode == 0
    world.run("servera", "gmirror", "insert", "remotemirror", "md0")
    assert "md0 (STALE)" in world.run("servera", "gmirror", "status").stdout   # -n: no autosync
    world.run("servera", "gmirror", "rebuild", "remotemirror", "md0")
    waits.wait_for(lambda: "COMPLETE" in world.run("servera", "gmirror", "status").stdout,
                   10, "rebuild")
    mirror = os.path.join(world.dev_dir("servera"), "mirror", "remotemirror")
    with open(mirror, "r+b") as f:
        f.seek(4096)
        f.write(b"written on servera")
    world.run("servera", "gmirror", "deactivate", "remotemirror", "ggate0")
    world.run("servera", "gmirror", "deactivate", "remotemirror", "md0")
    for image in (backup, primary):
        with open(image, "rb") as f:
            f.seek(4096)
            assert f.read(18) == b"written on servera", image
    assert world.violations() == []


def test_seed000_crash_keeps_mirrored_writes_and_tastes_on_the_peer(world, tmp_path):
    """servera dies with the mirror active: its writes were mirrored, so serverb's image has
    them; attaching that image on serverb tastes the metadata and starts the mirror there
    (seed 000's slave script checks for /dev/mirror/remotemirror for this reason)."""
    backup = export(world, tmp_path)
    primary = world.image("sitesprimary.img", 8)
    world.run("servera", "ggatec", "create", "192.168.1.102", backup)
    world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", primary)
    world.run("servera", "gmirror", "label", "remotemirror", "ggate0")
    world.run("servera", "gmirror", "insert", "remotemirror", "md0")
    waits.wait_for(lambda: "COMPLETE" in world.run("servera", "gmirror", "status").stdout,
                   10, "rebuild")
    with open(os.path.join(world.dev_dir("servera"), "mirror", "remotemirror"), "r+b") as f:
        f.write(b"last write before the crash")
    world.crash("servera")
    assert not os.path.exists(os.path.join(world.dev_dir("servera"), "mirror", "remotemirror"))
    with open(backup, "rb") as f:
        assert f.read(27) == b"last write before the crash"
    os.kill(world.state()["ggated"]["serverb"]["pid"], 15)   # seed 000 slave: pkill ggated
    world.configure(gmirror_timeout=0.3)
    assert world.run("serverb", "mdconfig", "-a", "-t", "vnode", "-f", backup).stdout == "md0\n"
    # one disk of two: STARTING (hidden) until kern.geom.mirror.timeout, then DEGRADED
    waits.wait_for(lambda: world.run("serverb", "gmirror", "status").stdout.splitlines()[1:] ==
                   ["mirror/remotemirror  DEGRADED  md0 (ACTIVE)"], 10, "the mirror to launch")


def test_ggated_export_mounted_locally_is_a_violation(world, tmp_path):
    """Invariant: ggated never serves an image its own node has mounted."""
    require_root()
    require_tool("mkfs.ext4")
    image = world.image("sitesbackup.img", 16)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", image, str(mnt)], check=True)
    try:
        export(world, tmp_path, size_mb=16)
        waits.wait_for(lambda: world.violations(), 10, "violation")
        v = world.violations()[0]
        assert v["kind"] == "ggated_export_mounted_locally" and str(mnt) in v["detail"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# -- fidelity to sbin/geom/core/geom.c (docs/reference/gmirror.md) --------------------------

def test_gmirror_status_unknown_geom_exits_1_and_only_dev_is_stripped(world):
    """geom.c std_status(): an unknown name is `errx(EXIT_FAILURE, "No such geom: %s.")`
    before anything is printed; find_geom() strips only "/dev/", so "mirror/m" is unknown."""
    plain_disk(world, "servera", "ada0")
    world.run("servera", "gmirror", "label", "m", "ada0")
    for name in ("nosuch", "mirror/m", "/dev/mirror/m"):
        r = world.run("servera", "gmirror", "status", name)
        assert (r.returncode, r.stdout, r.stderr) == (
            1, "", f"gmirror: No such geom: {name}.\n"), name
    r = world.run("servera", "gmirror", "status", "m", "nosuch")
    assert (r.returncode, r.stdout) == (1, "")
    for name in ("m", "/dev/m"):
        r = world.run("servera", "gmirror", "status", name)
        assert (r.returncode, r.stdout) == (0, "    Name    Status  Components\n"
                                               "mirror/m  COMPLETE  ada0 (ACTIVE)\n"), name


def test_gmirror_status_script_mode_has_no_minimum_widths(world):
    """geom.c std_status(): name_len and status_len start at 0 with -s (4 and 6 without);
    -g names the geom ("m") instead of its provider ("mirror/m")."""
    plain_disk(world, "servera", "ada0")
    world.run("servera", "gmirror", "label", "m", "ada0")
    assert world.run("servera", "gmirror", "status", "-gs").stdout == \
        "m  COMPLETE  ada0 (ACTIVE)\n"
    assert world.run("servera", "gmirror", "status", "-g").stdout == (
        "Name    Status  Components\n"
        "   m  COMPLETE  ada0 (ACTIVE)\n")


def stopped_two_disk_mirror(world) -> None:
    """Mirror m labelled on md0 and md1, stopped (metadata kept), both units detached."""
    for unit, img in enumerate(("a.img", "b.img")):
        world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", world.image(img, 8),
                  "-u", str(unit))
    assert world.run("servera", "gmirror", "label", "m", "md0", "md1").returncode == 0
    assert world.run("servera", "gmirror", "stop", "m").returncode == 0
    for unit in ("0", "1"):
        assert world.run("servera", "mdconfig", "-d", "-u", unit).returncode == 0


def test_gmirror_starting_until_every_disk_or_the_timeout_and_hidden_without_a(world):
    """g_mirror.c: a mirror tasted from fewer disks than its metadata counts stays STARTING,
    without a provider, until the rest arrive or kern.geom.mirror.timeout passes; geom.c
    std_status() skips geoms without a provider unless -a, and prints a provider-less geom
    only with -g (disks are NONE until the launch)."""
    stopped_two_disk_mirror(world)
    world.configure(gmirror_timeout=600)
    world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", world.image("a.img", 8),
              "-u", "0")
    dev = os.path.join(world.dev_dir("servera"), "mirror", "m")
    assert world.run("servera", "gmirror", "status").stdout == ""
    assert world.run("servera", "gmirror", "status", "-a").stdout == \
        "Name  Status  Components\n"
    assert world.run("servera", "gmirror", "status", "-ag").stdout == (
        "Name    Status  Components\n"
        "   m  STARTING  md0 (NONE)\n")
    r = world.run("servera", "gmirror", "status", "m")       # found, but no provider line
    assert (r.returncode, r.stdout) == (0, "Name  Status  Components\n")
    assert not os.path.lexists(dev)
    world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", world.image("b.img", 8),
              "-u", "1")                                      # the last disk: launch now
    assert world.run("servera", "gmirror", "status", "-s").stdout == (
        "mirror/m  COMPLETE  md0 (ACTIVE)\nmirror/m  COMPLETE  md1 (ACTIVE)\n")
    assert os.path.lexists(dev)


def test_gmirror_starting_launches_degraded_after_the_timeout(world):
    """g_mirror.c: when kern.geom.mirror.timeout expires the mirror starts with the disks it
    has (DEGRADED) and its provider appears."""
    stopped_two_disk_mirror(world)
    world.configure(gmirror_timeout=0.3)
    world.run("servera", "mdconfig", "-a", "-t", "vnode", "-f", world.image("a.img", 8),
              "-u", "0")
    waits.wait_for(lambda: world.run("servera", "gmirror", "status", "-s").stdout ==
                   "mirror/m  DEGRADED  md0 (ACTIVE)\n", 10, "mirror m to launch")
    assert os.path.lexists(os.path.join(world.dev_dir("servera"), "mirror", "m"))


def test_gmirror_old_format_components_print_without_state_on_that_node_only(world):
    """FreeBSD <= 8 geom.c status_one_consumer(): only g_mirror's <Synchronized> value, so a
    component is "prov" or "prov (NN%)" (configure(gmirror_old_format=[node]))."""
    world.configure(gmirror_old_format=["servera"], gmirror_sync_rate=1)
    for node in ("servera", "serverb"):
        plain_disk(world, node, "ada0")
        plain_disk(world, node, "ada1")
        world.run(node, "gmirror", "label", "m", "ada0")
        world.run(node, "gmirror", "insert", "m", "ada1")
        world.set_gmirror_progress(node, "m", "ada1", 42)
    assert world.run("servera", "gmirror", "status").stdout == (
        "    Name    Status  Components\n"
        "mirror/m  DEGRADED  ada0\n"
        "                    ada1 (42%)\n")
    assert world.run("serverb", "gmirror", "status", "-s").stdout == (
        "mirror/m  DEGRADED  ada0 (ACTIVE)\n"
        "mirror/m  DEGRADED  ada1 (SYNCHRONIZING, 42%)\n")
