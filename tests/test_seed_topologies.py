"""The seeds' whole stacks on two sandbox nodes (own mount/PID/UTS namespaces, as two
machines), driven through `hahooks master/slave/status` inside each node: the replication
kinds on the simulator (FreeBSD command forms forced for the FreeBSD seeds), real ext4
(fsck, mount), a real daemon serving files from the replicated filesystem, drbdlinks-style
links, and real zfs-fuse for seed 003. The simulator's invariant log must stay empty."""
from __future__ import annotations

import os
import sys

import pytest

from conftest import require_tool
from replication_helpers import SandboxCluster, layer, sandbox, unique  # noqa: F401
from storage_helpers import daemon_script, http_get, pid_of, sh


class Site:
    """What each node serves: a daemon (rc.d-style script) whose docroot is on the
    replicated filesystem, so it holds the mount while it runs."""

    def __init__(self, tmp_path, node: str, docroot_parent: str):
        self.name = unique("site")
        run_dir = tmp_path / f"run-{node}"
        run_dir.mkdir()
        self.d = daemon_script(str(tmp_path / f"rc.d-{node}"), self.name,
                               f"{docroot_parent}/www", str(run_dir))

    def layer(self) -> str:
        return layer("web", "service", service=self.name, manager="rc.d",
                     script_dir=os.path.dirname(self.d["script"]), pidfile=self.d["pidfile"])

    def get(self) -> str:
        return http_get(self.d["socket"], "/index.html")[1]

    def running(self) -> bool:
        return pid_of(self.d["pidfile"]) is not None and os.path.exists(self.d["socket"])


def seed_files(device: str, files: dict[str, str], where, mkfs=None) -> None:
    """mkfs + the site's files, done once by hand before the cluster runs."""
    require_tool("mkfs.ext4", "fsck")
    sh("mkfs.ext4", "-q", "-F", *(mkfs or [device]))
    where.mkdir(exist_ok=True)
    sh("mount", device, str(where))
    try:
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(where, rel)), exist_ok=True)
            with open(os.path.join(where, rel), "w") as fh:
                fh.write(text)
    finally:
        sh("umount", str(where))


def switch_over_and_back(tmp_path, c: SandboxCluster, sites: dict, served: str,
                         mountpoint: str) -> None:
    """A planned switchover with nodea master: nodea releases top-down, nodeb takes the
    same data and writes to it, then back to nodea, which must serve nodeb's write."""
    c.hh("nodea", "slave", check=0)
    assert not sites["nodea"].running() and c.mounted("nodea", str(tmp_path)) == []
    c.hh("nodeb", "master", check=0)
    assert sites["nodeb"].get() == served
    www = tmp_path / "nodeb" / mountpoint / "www"
    c.run("nodeb", "sh", "-c", f"echo 'written on nodeb' > {www}/index.html && sync")
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    assert sites["nodea"].get() == "written on nodeb\n"
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


@pytest.fixture
def fence_desk(tmp_path):
    """STONITH for the sandbox (hahooks.lab.drill.fence): a node's [node] fence asks the test
    to power its peer off; fence_desk(cluster) -> the node_extra line to configure it."""
    from hahooks.lab.drill.fence import FenceDesk

    desks = []

    def make(c: SandboxCluster, node: str, target: str) -> str:
        desk = FenceDesk(str(tmp_path / "fence"), c.nodes, lambda t, why: c.crash(t),
                         lambda n: c.boxes[n].alive).start()
        desks.append(desk)
        argv = [sys.executable, "-m", "hahooks.lab.drill.fence", "--desk", desk.desk,
                "--node", node, "--target", target, "--timeout", "20"]
        return "fence = [" + ", ".join(f'"{a}"' for a in argv) + "]\n"
    yield make
    for d in desks:
        d.stop()


# -- seed 002: HAST + UFS (ext4 here) + MySQL (a daemon here), devd/CARP ----------------------

def seed002(tmp_path, world, lab, node_extra=None):
    """node_extra: {node: [node] lines}, or a function (cluster) -> that dict."""
    r = unique("test")
    image = world.add_hast(r, size_mb=32)
    seed_files(image, {"www/index.html": "served from HAST\n"}, tmp_path / "seed")
    c = SandboxCluster(tmp_path, world, lab)
    if callable(node_extra):
        node_extra = node_extra(c)
    sites = {}
    for n in c.nodes:
        mp = str(tmp_path / n / "hast" / "test")
        sites[n] = Site(tmp_path, n, mp)
        c.write(n, layer("hast", "hast", resources=[r], secondary_wait="1s", device_wait="2s") +
                layer("data", "filesystem", device=c.dev(n, "hast", r), mountpoint=mp,
                      fstype="ext4") +
                sites[n].layer(), 'demote = ["true"]\n' + ((node_extra or {}).get(n, "")))
    return r, c, sites


def test_seed002_failover_failback_and_refusals(tmp_path, sandbox):
    world, lab = sandbox
    r, c, sites = seed002(tmp_path, world, lab)
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    assert sites["nodea"].get() == "served from HAST\n"
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and st.stdout.startswith("OK"), st.stdout
    assert c.hh("nodeb", "status").returncode == 0              # a clean slave

    # CARP flaps on nodeb while nodea is still primary: refused, nothing changed on nodeb
    p = c.hh("nodeb", "master")
    assert p.returncode == 1 and "still acts as primary" in p.stderr, p.stderr
    assert world.hast_role(r, "nodeb") == "secondary"
    assert sites["nodea"].get() == "served from HAST\n"

    switch_over_and_back(tmp_path, c, sites, "served from HAST\n", "hast/test")
    assert world.hast_role(r, "nodeb") == "secondary"


def test_seed002_device_never_appears_rolls_back(tmp_path, sandbox):
    world, lab = sandbox
    r, c, sites = seed002(tmp_path, world, lab)
    world.set_hast(r, device_delay=30)
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and f"hast/{r} to appear" in p.stderr and "rolled back" in p.stderr
    assert world.hast_role(r, "nodea") == "secondary"
    assert not sites["nodea"].running() and c.mounted("nodea", str(tmp_path)) == []
    st = c.hh("nodea", "status")      # everything released, and it says master was wanted
    assert st.returncode == 2 and "nothing held" in st.stdout
    assert "desired role is master" in st.stdout
    c.assert_no_violations()


def test_seed002_peer_crash_then_fenced_takeover_is_degraded_warning(tmp_path, sandbox,
                                                                     fence_desk):
    world, lab = sandbox
    r, c, sites = seed002(tmp_path, world, lab,
                          lambda c: {"nodeb": fence_desk(c, "nodeb", "nodea")})
    world.configure(hast_peer_primary_wait=3.0)   # the new primary's connect stall, shortened
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    c.crash("nodea")                          # power cut: processes, mounts, hastd gone
    # nodeb's secondary worker outlives nodea by 2 * HAST_KEEPALIVE: no proof that nodea
    # left primary, so nodeb fences it (already off: the desk says so) before taking over
    c.hh("nodeb", "master", check=0)
    assert sites["nodeb"].get() == "served from HAST\n"
    st = c.hh("nodeb", "status")
    assert st.returncode == 1 and "degraded" in st.stdout, st.stdout
    c.boot("nodea")                           # nodea comes back: hastd has r in init
    st = c.hh("nodea", "status")
    assert st.returncode == 2 and "role init" in st.stdout, st.stdout
    c.hh("nodea", "slave", check=0)           # CARP BACKUP: secondary, replication resumes
    assert world.hast_role(r, "nodea") == "secondary"
    c.assert_no_violations()


# -- seeds 001/004: DRBD + ext3/ext4 + drbdlinks + Apache (Heartbeat) -------------------------

DRBD_VERSIONS = pytest.mark.parametrize("drbd_version", ["8.4", "9"])


def seed001(tmp_path, world, lab, drbd_version, node_extra=None):
    r = unique("r")
    world.configure(drbd_version=drbd_version)
    image = world.add_drbd(r, size_mb=32)
    seed_files(image, {"www/index.html": "served from DRBD\n"}, tmp_path / "seed")
    minor = world.state()["drbd"][r]["minor"]
    c = SandboxCluster(tmp_path, world, lab)
    sites = {}
    for n in c.nodes:
        mp = str(tmp_path / n / "drbd")
        docroot = str(tmp_path / n / "var" / "www")       # a link into the DRBD filesystem
        os.makedirs(os.path.dirname(docroot))
        sites[n] = Site(tmp_path, n, os.path.dirname(docroot))
        c.write(n, layer("r0", "drbd", resource=r, minor=minor, promote_wait="1s") +
                layer("data", "filesystem", device=c.dev(n, f"drbd{minor}"), mountpoint=mp,
                      fstype="ext4") +
                layer("links", "links", links={docroot: f"{mp}/www"}) +
                sites[n].layer(), (node_extra or {}).get(n, ""))
    return r, c, sites


@DRBD_VERSIONS
def test_seed001_failover_failback_and_refusal(tmp_path, sandbox, drbd_version):
    world, lab = sandbox
    r, c, sites = seed001(tmp_path, world, lab, drbd_version)
    c.hh("nodea", "master", check=0)
    assert sites["nodea"].get() == "served from DRBD\n"
    assert os.path.islink(tmp_path / "nodea" / "var" / "www")
    st = c.hh("nodea", "status")
    assert st.returncode == 0 and st.stdout.startswith("OK"), st.stdout

    p = c.hh("nodeb", "master")                   # Heartbeat on nodeb thinks nodea is gone
    assert p.returncode == 1 and "the peer is Primary" in p.stderr, p.stderr
    assert not os.path.islink(tmp_path / "nodeb" / "var" / "www")

    switch_over_and_back(tmp_path, c, sites, "served from DRBD\n", "drbd")
    assert not os.path.islink(tmp_path / "nodea" / "var" / "www")


@DRBD_VERSIONS
def test_seed001_without_uptodate_data_refuses_and_mounts_nothing(tmp_path, sandbox, drbd_version):
    world, lab = sandbox
    r, c, sites = seed001(tmp_path, world, lab, drbd_version)
    world.set_drbd(r, "nodeb", disk="Outdated")
    world.partition("nodea", "nodeb")
    p = c.hh("nodeb", "master")
    assert p.returncode == 1 and "no access to UpToDate data" in p.stderr, p.stderr
    assert c.mounted("nodeb", str(tmp_path)) == [] and not sites["nodeb"].running()
    c.assert_no_violations()


@DRBD_VERSIONS
def test_seed001_crash_takeover_with_fence(tmp_path, sandbox, fence_desk, drbd_version):
    world, lab = sandbox
    r, c, sites = seed001(tmp_path, world, lab, drbd_version)
    c.write("nodeb", _stack_of(c, "nodeb"), fence_desk(c, "nodeb", "nodea"))
    c.hh("nodea", "master", check=0)
    world.partition("nodea", "nodeb")        # nodeb stops hearing nodea: is it dead?
    p = c.hh("nodeb", "master")              # the fence powers nodea off first
    assert p.returncode == 0, p.stderr
    assert not c.boxes["nodea"].alive and not world.state()["nodes"]["nodea"]["up"]
    assert sites["nodeb"].get() == "served from DRBD\n"
    st = c.hh("nodeb", "status")
    assert st.returncode == 1 and "not replicating" in st.stdout, st.stdout
    c.hh("nodeb", "slave", check=0)
    c.assert_no_violations()


def _stack_of(c: SandboxCluster, node: str) -> str:
    """The [[resource]] part of a node's config (to write it again with other node keys)."""
    text = open(c.configs[node]).read()
    return text[text.index("[[resource]]"):]


# -- seed 000: gmirror over ggate + md, freevrrpd; both nodes' stacks --------------------------

A, B = "10.99.0.1", "10.99.0.2"
IMAGE_MB = 16
MIRROR_BLOCKS = (IMAGE_MB * 1024 * 1024 - 512) // 1024   # gmirror keeps the last sector


def seed000(tmp_path, world, lab):
    world.add_node("nodea", A)
    world.add_node("nodeb", B)
    mirror = unique("remotemirror")
    backup = world.image(unique("sitesbackup"), IMAGE_MB)        # Server_B's image
    primary = world.image(unique("sitesprimary"), IMAGE_MB)      # Server_A's image
    # the filesystem lives on the mirror: one sector smaller than the images
    seed_files(backup, {"www/index.html": "served from the mirror\n"}, tmp_path / "seed",
               mkfs=["-b", "1024", backup, str(MIRROR_BLOCKS)])
    exports = tmp_path / "gg.exports"
    exports.write_text(f"{A} RW {backup}\n")
    c = SandboxCluster(tmp_path, world, lab)
    sites = {}
    for n in c.nodes:
        sites[n] = Site(tmp_path, n, str(tmp_path / n / "home" / "sites"))
    top = {n: layer("sites", "filesystem", device=c.dev(n, "mirror", mirror),
                    mountpoint=str(tmp_path / n / "home" / "sites"), fstype="ext4") +
           sites[n].layer() for n in c.nodes}
    c.write("nodea", layer("remote-image", "ggate-attach", host=B, path=backup, unit=0,
                           connect_wait="3s") +
            layer("local-image", "md", file=primary, unit=0) +
            layer("mirror", "gmirror", mirror=mirror, components=["ggate0", "md0"],
                  autosync=False) + top["nodea"])
    c.write("nodeb", layer("export", "ggate-export", image=backup, exports_file=str(exports)) +
            layer("image", "md", file=backup, unit=0) +
            layer("mirror", "gmirror", mirror=mirror, components=["md0"]) + top["nodeb"])
    return c, sites, primary


def test_seed000_both_nodes_failover_failback_and_degraded(tmp_path, sandbox):
    world, lab = sandbox
    c, sites, primary = seed000(tmp_path, world, lab)
    c.hh("nodeb", "slave", check=0)           # Server_B at boot: ggated serves its image
    st = c.hh("nodeb", "status")
    assert st.returncode == 0 and "ggated (pid" in st.stdout, st.stdout
    c.hh("nodea", "master", check=0)          # Server_A: ggatec, md0, mirror, mount, web
    assert sites["nodea"].get() == "served from the mirror\n"
    st = c.hh("nodea", "status")
    assert st.returncode in (0, 1) and "mirror/" in st.stdout, st.stdout

    # seed 000 test 1: fail the master by hand, the slave takes over; then fail back
    c.hh("nodea", "slave", check=0)
    assert c.run("nodea", "ggatec", "list").stdout == ""
    c.hh("nodeb", "master", check=0)
    assert sites["nodeb"].get() == "served from the mirror\n"
    www = tmp_path / "nodeb" / "home" / "sites" / "www"
    c.run("nodeb", "sh", "-c", f"echo 'written on Server_B' > {www}/index.html && sync")
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)          # relabel from ggate0: md0 rebuilt from it
    assert sites["nodea"].get() == "written on Server_B\n"

    # seed 000 test 3: Server_B dies while Server_A serves: DEGRADED is a warning once a
    # write found ggate0 gone (ggatec's guard fails it after 5..5+io_timeout s; until then
    # gmirror cannot know: docs/reference/ggate.md §4)
    c.crash("nodeb")
    www = tmp_path / "nodea" / "home" / "sites" / "www"
    w = c.run("nodea", "sh", "-c", f"echo 'written alone' > {www}/alone.html && sync")
    assert w.returncode == 0, w.stderr
    st = c.hh("nodea", "status")
    assert st.returncode == 1 and st.stdout.startswith("WARNING"), st.stdout
    assert "DEGRADED" in st.stdout and "ggate0" in st.stdout
    assert sites["nodea"].get() == "written on Server_B\n"      # still serving
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


def test_seed000_master_without_the_slave_rolls_back(tmp_path, sandbox):
    world, lab = sandbox
    c, sites, primary = seed000(tmp_path, world, lab)
    p = c.hh("nodea", "master")               # Server_B never started ggated
    assert p.returncode == 1 and "rolled back" in p.stderr, p.stderr
    assert c.run("nodea", "mdconfig", "-l").stdout == "" and not sites["nodea"].running()
    c.assert_no_violations()


# -- seed 003: HAST x3 -> raidz1 pool (zfs-fuse), devd/CARP ------------------------------------

def seed003(tmp_path, world, lab):
    require_tool("zfs-fuse", "zpool")
    disks = [unique("disk") for _ in range(3)]
    for d in disks:
        world.add_hast(d, size_mb=64)                  # zfs-fuse wants vdevs of 64 MB
    pool = unique("zh")
    c = SandboxCluster(tmp_path, world, lab, zfs=True)
    mnt = str(tmp_path / "zhast")
    # the seed's one-time set-up, on nodea: primary, zpool create, export, secondary
    c.run("nodea", "hastctl", "role", "primary", *disks)
    from hahooks import waits
    # the devices live in nodea's blockio mount: look from inside nodea
    waits.wait_for(lambda: c.run("nodea", "test", "-e", c.dev("nodea", "hast", disks[-1]),
                                 *[a for d in disks[:-1] for a in
                                   ("-a", "-e", c.dev("nodea", "hast", d))]).returncode == 0,
                   10, "HAST devices on nodea")
    made = c.run("nodea", "zpool", "create", "-m", mnt, pool, "raidz1",
                 *[c.dev("nodea", "hast", d) for d in disks])
    assert made.returncode == 0, made.stderr
    assert c.run("nodea", "zpool", "export", pool).returncode == 0
    c.run("nodea", "hastctl", "role", "secondary", *disks)
    for n in c.nodes:
        c.write(n, layer("hast", "hast", resources=disks, secondary_wait="1s") +
                layer("zhast", "zpool", pool=pool, import_dirs=[c.dev(n, "hast")]))
    return disks, pool, mnt, c


def test_seed003_hast_zfs_failover_refusal_and_crash(tmp_path, sandbox):
    world, lab = sandbox
    disks, pool, mnt, c = seed003(tmp_path, world, lab)
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    assert c.run("nodea", "zpool", "list", "-H", "-o", "name,health").stdout.split() == \
        [pool, "ONLINE"]
    wrote = c.run("nodea", "dd", "if=/dev/urandom", f"of={mnt}/from_a.bin", "bs=64k",
                  "count=4", "conv=fsync")
    assert wrote.returncode == 0, wrote.stderr
    st = c.hh("nodea", "status")
    assert st.returncode == 0, st.stdout

    # the raidz's vdevs are in an imported pool: the hast layer alone refuses to let go
    c.write("nodea", layer("hast", "hast", resources=disks))
    p = c.hh("nodea", "slave")
    assert p.returncode == 1 and f"is a vdev of imported pool {pool}" in p.stderr, p.stderr
    assert all(world.hast_role(d, "nodea") == "primary" for d in disks)
    c.write("nodea", layer("hast", "hast", resources=disks, secondary_wait="1s") +
            layer("zhast", "zpool", pool=pool, import_dirs=[c.dev("nodea", "hast")]))

    # CARP flap on nodeb while nodea is primary: refused before any role change
    p = c.hh("nodeb", "master")
    assert p.returncode == 1 and "still acts as primary" in p.stderr, p.stderr

    # switchover: export, secondary; nodeb imports and sees nodea's file
    c.hh("nodea", "slave", check=0)
    c.hh("nodeb", "master", check=0)
    assert c.run("nodeb", "test", "-s", f"{mnt}/from_a.bin").returncode == 0

    # nodeb's power fails: its secondary workers on nodea linger 2 * HAST_KEEPALIVE (no
    # proof nodeb left primary), so nodea fences nodeb, then takes over; the new primary's
    # I/O stalls while it tries to reach the dead peer (hast_peer_primary_wait, shortened)
    world.configure(hast_peer_primary_wait=3.0)
    marker = tmp_path / "fenced"
    c.write("nodea", layer("hast", "hast", resources=disks, secondary_wait="1s") +
            layer("zhast", "zpool", pool=pool, import_dirs=[c.dev("nodea", "hast")]),
            node_extra=f'fence = ["/bin/sh", "-c", "echo nodeb >> {marker}"]\n')
    c.crash("nodeb")
    c.hh("nodea", "master", check=0)
    assert marker.read_text() == "nodeb\n"
    assert c.run("nodea", "test", "-s", f"{mnt}/from_a.bin").returncode == 0
    st = c.hh("nodea", "status")
    assert st.returncode == 1 and "degraded" in st.stdout, st.stdout
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


# -- the example configs of these seeds ------------------------------------------------------

@pytest.mark.parametrize("example,layers", [
    ("seed000-master.toml", "ggate-attach md gmirror filesystem service"),
    ("seed000-slave.toml", "ggate-export md gmirror filesystem service"),
    ("seed002-hast-ufs-mysql.toml", "hast filesystem service"),
    ("seed003-hast-zfs.toml", "hast zpool"),
    ("seed001-drbd.toml", "drbd filesystem links service"),
])
def test_example_configs_are_valid(tmp_path, example, layers):
    from conftest import ROOT, run_hahooks
    from hahooks import config

    path = tmp_path / example
    path.write_text(open(os.path.join(ROOT, "examples", example)).read())
    os.chmod(path, 0o600)
    run_hahooks("check", "-c", path, check=0)
    assert " ".join(r.kind for r in config.load(str(path)).resources) == layers
