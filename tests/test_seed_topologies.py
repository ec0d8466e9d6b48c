"""The seeds' whole stacks, two simulated nodes, driven through `hahooks master/slave/status`
(FreeBSD command forms forced where the seed is FreeBSD): replication kinds on the
simulator, real ext4 (fsck, mount), a real daemon serving files from the replicated
filesystem, real zfs-fuse for seed 003. The simulator's invariant log must stay empty."""
from __future__ import annotations

import os

import pytest

from conftest import require_root, require_tool
from replication_helpers import SimCluster, layer, unique, world  # noqa: F401
from storage_helpers import Lab, daemon_script, http_get, mounted_under, pid_of, sh


@pytest.fixture
def lab(tmp_path):
    require_root()
    require_tool("mkfs.ext4", "fsck", "mount", "umount")
    owner = Lab(str(tmp_path))
    try:
        yield owner
    finally:
        owner.close()


class Site:
    """What each node serves: a daemon (rc.d-style script) whose docroot is on the
    replicated filesystem, so it holds the mount while it runs."""

    def __init__(self, tmp_path, lab, node: str, mountpoint: str):
        self.name = unique("site")
        self.run_dir = tmp_path / f"run-{node}"
        self.run_dir.mkdir()
        self.d = daemon_script(str(tmp_path / f"rc.d-{node}"), self.name,
                               f"{mountpoint}/www", str(self.run_dir))
        self.lab = lab

    def layer(self) -> str:
        return layer("web", "service", service=self.name, manager="rc.d",
                     script_dir=os.path.dirname(self.d["script"]), pidfile=self.d["pidfile"])

    def get(self) -> str:
        pid = pid_of(self.d["pidfile"])
        if pid:
            self.lab.adopt(pid)
        return http_get(self.d["socket"], "/index.html")[1]


def crash_processes_and_mounts(site: Site, node_dir) -> None:
    """The rest of a crash on a one-machine cluster: the dead node's processes and mounts
    go too (else its loop device stays attached, and mount(8) reuses a loop device by the
    backing file's inode, which the peer's simulated device shares)."""
    import signal

    pid = pid_of(site.d["pidfile"])
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        from hahooks import waits
        waits.wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                       open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
                       10, "the crashed node's daemon to die")
    for m in sorted(mounted_under(str(node_dir)), key=lambda m: -len(m.mountpoint)):
        sh("umount", m.mountpoint)


def seed_files(device: str, files: dict[str, str], where) -> None:
    """mkfs + the site's files, done once by hand before the cluster runs."""
    sh("mkfs.ext4", "-q", "-F", device)
    where.mkdir(exist_ok=True)
    sh("mount", device, str(where))
    try:
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(where, rel)), exist_ok=True)
            with open(os.path.join(where, rel), "w") as fh:
                fh.write(text)
    finally:
        sh("umount", str(where))


# -- seed 002: HAST + UFS (ext4 here) + MySQL (a daemon here), devd/CARP ----------------------

def seed002(tmp_path, world, lab):
    r = unique("test")
    image = world.add_hast(r, size_mb=32)
    seed_files(image, {"www/index.html": "served from HAST\n"}, tmp_path / "seed")
    c = SimCluster(tmp_path, world)
    sites = {}
    for n in c.nodes:
        mp = str(tmp_path / n / "hast" / "test")
        sites[n] = Site(tmp_path, lab, n, mp)
        c.write(n, layer("hast", "hast", resources=[r], secondary_wait="1s",
                         device_wait="2s") +
                layer("data", "filesystem", device=c.dev(n, "hast", r), mountpoint=mp,
                      fstype="ext4") +
                sites[n].layer(),
                'demote = ["true"]\n')
    return r, c, sites


def test_seed002_failover_failback_and_refusals(tmp_path, world, lab):
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

    # planned switchover: nodea releases top-down, nodeb takes the same data
    c.hh("nodea", "slave", check=0)
    assert world.hast_role(r, "nodea") == "secondary"
    c.hh("nodeb", "master", check=0)
    assert sites["nodeb"].get() == "served from HAST\n"
    www = tmp_path / "nodeb" / "hast" / "test" / "www"
    (www / "index.html").write_text("written on nodeb\n")
    c.hh("nodeb", "slave", check=0)
    c.hh("nodea", "master", check=0)
    assert sites["nodea"].get() == "written on nodeb\n"
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()


def test_seed002_device_never_appears_rolls_back(tmp_path, world, lab):
    r, c, sites = seed002(tmp_path, world, lab)
    world.set_hast(r, device_delay=30)
    p = c.hh("nodea", "master")
    assert p.returncode == 1 and f"hast/{r} to appear" in p.stderr and "rolled back" in p.stderr
    assert world.hast_role(r, "nodea") == "secondary"
    assert pid_of(sites["nodea"].d["pidfile"]) is None
    st = c.hh("nodea", "status")      # everything released, and it says master was wanted
    assert st.returncode == 2 and "nothing held" in st.stdout and "desired role is master" in st.stdout
    c.assert_no_violations()


def test_seed002_peer_crash_then_takeover_is_degraded_warning(tmp_path, world, lab):
    r, c, sites = seed002(tmp_path, world, lab)
    c.hh("nodea", "master", check=0)
    world.crash("nodea")                 # nodea's kernel is gone: its worker and device too
    crash_processes_and_mounts(sites["nodea"], tmp_path / "nodea")
    c.hh("nodeb", "master", check=0)
    assert sites["nodeb"].get() == "served from HAST\n"
    st = c.hh("nodeb", "status")
    assert st.returncode == 1 and "degraded" in st.stdout, st.stdout
    c.hh("nodeb", "slave", check=0)
    c.assert_no_violations()
