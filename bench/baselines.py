"""1. Against the seed scripts: the users' failover scripts ($HAHOOKS_BASELINES, run by
path, never copied) against `hahooks master|slave` with the equivalent stack, on the same
simulator with the same per-command latencies, in the same sandbox node, same machine.

  seed003  `seed003-failover.sh master|slave` on nodea of a two-node sandbox (own mount,
           PID and UTS namespaces; nodea runs its own zfs-fuse): HAST disk1..disk3 (sim)
           under the raidz1 pool zhast; hahooks: hast -> zpool (examples/seed003-hast-zfs).
  seed000  Server_A and Server_B (sim gmirror, ggatec/ggated, mdconfig; ext4 stands for
           UFS): each node's master and backup script vs hahooks with the stacks of
           examples/seed000-{master,slave}.toml without the Apache layer (the scripts start
           no service).

Every simulated FreeBSD tool (hastctl, gmirror, ggatec, mdconfig) costs LATENCY a call for
both; zpool, mount, fsck are the real ones. Each figure is script wall / hahooks wall (the
median of the runs), target >= 10x, and the end states (roles, pools, mounts, units) must be
the same, or the figure is not met. Everything is named blpart1* and removed at the end.
Each run starts both from the same state: seed003 alternates script and hahooks on nodea
(nodeb's disks stay secondary); seed000 resets a node (nothing mounted, no unit, ggated
serving on Server_B) before each master, and Server_A's backup starts from the master state
hahooks makes, as its master script never ends (ggatec has no -d: see never_ends()).

Adaptations: the scripts' text is untouched, they run with the interpreter their shebang
names (bash; seed003's /bin/sh is run by bash too, see 1), and what differs from FreeBSD is
all in the node's environment (the same for hahooks):
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile

from baseline_node import (ADAPTATIONS, Box, checked, config, hahooks, layer, script,
                           shims)
from common import Figure, render_markdown

__doc__ += "\n".join("  " + a for a in ADAPTATIONS) + "\n"

LATENCY = 0.030                       # seconds, each simulated FreeBSD tool call
SIM_TOOLS = ("hastctl", "gmirror", "ggatec", "mdconfig")
TARGET = 10.0


class Sample:
    """Walls and end states of one figure: script vs hahooks, one direction."""

    def __init__(self, label: str, direction: str):
        self.label, self.direction = label, direction
        self.walls: dict[str, list[float]] = {"script": [], "hahooks": []}
        self.states: dict[str, list[dict]] = {"script": [], "hahooks": []}
        self.never_ends = ""          # why the script cannot reach its end state

    def add(self, who: str, wall: float, state: dict) -> None:
        self.walls[who].append(wall)
        self.states[who].append(state)

    def differences(self) -> list[str]:
        everything = self.states["script"] + self.states["hahooks"]
        out = []
        for key in everything[0]:
            seen = {who: sorted({str(st[key]) for st in self.states[who]})
                    for who in self.states}
            if len({str(st[key]) for st in everything}) > 1:
                out.append(f"{key}: script {' or '.join(seen['script'])}, hahooks "
                           f"{' or '.join(seen['hahooks'])}")
        return out

    def figure(self) -> Figure:
        h = statistics.median(self.walls["hahooks"])
        name = f"{self.label} {self.direction}"
        if self.never_ends:
            return Figure("1 seed scripts", f"{name} (hahooks {h:.2f} s, the script never "
                          "ends)", float("nan"), "x", f">= {TARGET:g}x", None,
                          note=self.never_ends)
        s = statistics.median(self.walls["script"])
        diff = self.differences()
        ratios = [a / b for a, b in zip(self.walls["script"], self.walls["hahooks"])]
        note = ("same end state" if not diff else "end states differ: " + "; ".join(diff))
        return Figure("1 seed scripts", f"{name} (hahooks {h:.2f} s vs script {s:.2f} s)",
                      s / h, "x", f">= {TARGET:g}x", not diff and s / h >= TARGET,
                      min(ratios), max(ratios), f"{note}; {len(ratios)} runs")


# -- seed 003 --------------------------------------------------------------------------------
DISKS = ("disk1", "disk2", "disk3")            # the script's resources="disk1 disk2 disk3"
POOL = "zhast"                                 # its pool="zhast"


def seed003(lab, world, parent: str, tools: str, runs: int) -> list[Sample]:
    from hahooks import waits

    for disk in DISKS:
        world.add_hast(disk, size_mb=64)          # zfs-fuse wants 64 MB vdevs
    a = Box(lab, world, "nodea", tools, zfs=True)
    b = Box(lab, world, "nodeb", tools)
    b.run("hastctl", "role", "secondary", *DISKS)   # nodeb's hastd up, its disks secondary
    mnt = os.path.join(parent, "zhast")
    devs = [os.path.join(a.simdev, "hast", d) for d in DISKS]
    a.run("hastctl", "role", "primary", *DISKS)
    # the device is a symlink into the node's own blockio FUSE mount (lab/sim/hastd.py),
    # which this (host) mount namespace does not see: its link is what appears
    waits.wait_for(lambda: all(map(os.path.lexists, devs)), 10, "HAST devices on nodea")
    a.run("zpool", "create", "-m", mnt, POOL, "raidz1", *devs)
    a.run("zpool", "export", POOL)
    a.run("hastctl", "role", "secondary", *DISKS)
    hh = config(os.path.join(parent, "seed003.toml"), a, parent,
                layer("hast", "hast", resources=list(DISKS)) +
                layer("zhast", "zpool", pool=POOL,
                      import_dirs=[os.path.join(a.simdev, "hast")]))

    def state():
        return {"HAST roles": "/".join(world.hast_role(d, "nodea") for d in DISKS),
                "pools": a.run("zpool", "list", "-H", "-o", "name").stdout.split(),
                "mounts": a.mounted(mnt)}
    samples = {d: Sample("seed003", d) for d in ("master", "slave")}
    try:
        for i in range(runs):
            for who, argv in (("script", script("seed003-failover.sh", "{role}")),
                              ("hahooks", hh)):
                for role in ("master", "slave"):
                    wall = checked(a, hahooks(argv, role), f"{who} {role}")
                    samples[role].add(who, wall, state())
    finally:
        a.run("zpool", "export", POOL, check=False)
    return list(samples.values())


# -- seed 000 --------------------------------------------------------------------------------
A_ADDR, B_ADDR = "192.168.1.100", "192.168.1.101"     # Server_A, Server_B (the seed's)
IMAGE_MB = 16
MIRROR_BLOCKS = (IMAGE_MB << 20) // 1024 - 1          # ext4 (1 KiB blocks) leaves gmirror
MASTER_CAP = 10.0                                     # its last sector


def seed000(lab, world, parent: str, tools: str, runs: int) -> list[Sample]:
    """Server_B's master/backup scripts vs hahooks on serverb, then Server_A's backup
    script vs hahooks slave on servera (whose master state hahooks makes: Server_A's
    master script never gets there, see never_ends)."""
    import subprocess

    images = os.path.join(parent, "images")
    os.makedirs(images)
    backup, primary = (os.path.join(images, f"sites{n}.img") for n in ("backup", "primary"))
    for img in (backup, primary):
        with open(img, "wb") as fh:
            fh.truncate(IMAGE_MB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "1024", backup, str(MIRROR_BLOCKS)],
                   check=True, capture_output=True)
    dirs = (("/root/images", images), ("/home/sites", None))
    a = Box(lab, world, "servera", tools, addr=A_ADDR, loops=256, private=dirs)
    b = Box(lab, world, "serverb", tools, addr=B_ADDR, loops=256, private=dirs)
    b.node.write_file("/etc/gg.exports", f"{A_ADDR} RW /root/images/sitesbackup.img\n")
    sites = {"mountpoint": "/home/sites", "fstype": "ext4"}
    hh_b = config(os.path.join(parent, "serverb.toml"), b, parent,
                  layer("export", "ggate-export", image="/root/images/sitesbackup.img",
                        exports_file="/etc/gg.exports") +
                  layer("image", "md", file="/root/images/sitesbackup.img", unit=0) +
                  layer("mirror", "gmirror", mirror="remotemirror", components=["md0"]) +
                  layer("sites", "filesystem", device=f"{b.simdev}/mirror/remotemirror",
                        **sites))
    hh_a = config(os.path.join(parent, "servera.toml"), a, parent,
                  layer("remote-image", "ggate-attach", host=B_ADDR,
                        path="/root/images/sitesbackup.img", unit=0, connect_wait="3s") +
                  layer("local-image", "md", file="/root/images/sitesprimary.img", unit=0) +
                  layer("mirror", "gmirror", mirror="remotemirror",
                        components=["ggate0", "md0"], prefer="ggate0", balance="prefer",
                        autosync=False) +
                  layer("sites", "filesystem", device=f"{a.simdev}/mirror/remotemirror",
                        **sites))

    def state(box: Box) -> dict:
        mirrors = box.run("gmirror", "status", "-s").stdout.split()
        return {"mounts": box.mounted("/home/sites"),
                "md units": box.run("mdconfig", "-l").stdout.split(),
                "ggate units": box.run("ggatec", "list").stdout.split(),
                "mirrors": [m for m in mirrors if m.startswith("mirror/")],
                "ggated": world.store.alive(box.name, "ggated")}

    def reset(box: Box) -> None:
        """Nothing mounted, no mirror, no md/ggate unit; ggated running on serverb."""
        box.run("umount", "/home/sites", check=False)
        box.run("gmirror", "destroy", "-f", "remotemirror", check=False)
        box.run("ggatec", "destroy", "-f", "-u", "0", check=False)
        box.run("mdconfig", "-d", "-u", "0", check=False)
        if box is b and not world.store.alive("serverb", "ggated"):
            box.run("/sbin/ggated")

    samples = {k: Sample("seed000 " + k.split(" ", 1)[0], k.split(" ", 1)[1]) for k in (
        "Server_B master", "Server_B backup", "Server_A master", "Server_A backup")}

    def measure(key: str, who: str, box: Box, argv) -> None:
        samples[key].add(who, checked(box, argv, f"{key} ({who})"), state(box))
    for i in range(runs):
        reset(b)
        measure("Server_B master", "script", b, script("seed000-serverB-master_script.sh"))
        measure("Server_B backup", "script", b, script("seed000-serverB-backup_script.sh"))
        reset(b)
        measure("Server_B master", "hahooks", b, hahooks(hh_b, "master"))
        measure("Server_B backup", "hahooks", b, hahooks(hh_b, "slave"))
        reset(b)
        reset(a)
        measure("Server_A master", "hahooks", a, hahooks(hh_a, "master"))
        measure("Server_A backup", "script", a, script("seed000-serverA-backup_script.sh"))
        reset(a)
        checked(a, hahooks(hh_a, "master"), "Server_A master (hahooks)")
        measure("Server_A backup", "hahooks", a, hahooks(hh_a, "slave"))
    reset(a)
    samples["Server_A master"].never_ends = never_ends(a, world)
    reset(a)
    return list(samples.values())


def never_ends(a: Box, world) -> str:
    """Server_A's master script loops `while [ ! -c /dev/ggate0 ]; do ggatec create -d 5
    192.168.1.102 ...; sleep 1; done`: ggatec has no -d (usage error, as on FreeBSD), and
    .102 is the floating VRRP address. Run it MASTER_CAP seconds to show it."""
    import subprocess

    before = len(world.commands("servera"))
    try:
        took, proc = a.timed(script("seed000-serverA-master_script.sh"), timeout=MASTER_CAP)
        return f"it exited {proc.returncode} after {took:.1f} s (expected to loop)"
    except subprocess.TimeoutExpired:
        tries = sum(1 for c in world.commands("servera")[before:]
                    if c.get("argv", [])[:2] == ["ggatec", "create"])
        return (f"stopped after {MASTER_CAP:g} s, {tries} `ggatec create -d 5 192.168.1.102` "
                "tries: ggatec has no -d option (usage error), and .102 is the floating "
                "address, so /dev/ggate0 never appears and the loop never ends")


def run(args) -> list[Figure]:
    """Issue 7 part 1 for bench/run.py."""
    if os.geteuid() != 0:
        raise RuntimeError("part 1 needs root (namespaces, mounts, zfs-fuse)")
    quick = getattr(args, "quick", False)
    runs = getattr(args, "runs", None) or (1 if quick else 3)
    from hahooks.lab.sandbox import Lab
    from hahooks.lab.sim import World

    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="blpart1-", dir="/var/tmp") as parent:
        for label, fn in (("seed003", seed003), ("seed000", seed000)):
            if getattr(args, "seed", None) not in (None, label):
                continue
            world = World(os.path.join(parent, f"world-{label}"), autostart=False)
            for tool in SIM_TOOLS:
                world.set_latency(f"{tool} *", LATENCY)
            os.makedirs(os.path.join(parent, label))
            tools = shims(os.path.join(parent, label), world)
            try:
                with Lab(prefix=f"blpart1{label[-1]}{os.getpid() % 10000}",
                         workdir=os.path.join(parent, label, "lab")) as lab:
                    samples += fn(lab, world, os.path.join(parent, label), tools, runs)
            finally:
                world.close()
                with contextlib.suppress(Exception):
                    if world.violations():
                        print(f"{label}: simulator violations: {world.violations()}",
                              file=sys.stderr)
    return [s.figure() for s in samples]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run per figure")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    ap.add_argument("--seed", choices=("seed003", "seed000"), help="one seed's scripts only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/baselines.py: run as root", file=sys.stderr)
        return 4
    figures = run(args)
    print(render_markdown(figures, "1. hahooks vs the seed scripts"))
    print("Adaptations (the scripts' text untouched):\n" + "\n".join(ADAPTATIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
