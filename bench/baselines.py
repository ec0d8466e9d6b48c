"""1. Against the seed scripts: the users' failover scripts (../shared/baselines/, run by
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
import time

from common import ROOT, Figure, render_markdown

ADAPTATIONS = (
    "1. `[ -c DEV ]`: FreeBSD devices are character specials, the simulator's are files, "
    "so `[`/`test` are an executable on PATH that reads a leading -c as -e; the builtins "
    "are switched off: `bash -c 'enable -n [ test; . \"$0\" \"$@\"' SCRIPT ARGS` (dash "
    "cannot switch them off, so seed003's /bin/sh script runs under bash).",
    "2. /dev is a private tmpfs in each node (null, zero, random, fuse, loop nodes) whose "
    "hast/, mirror/, md0, ggate0 point into the simulator's device dir.",
    "3. `zpool import` without -d gets `-d /dev/hast`: FreeBSD's search covers every GEOM "
    "provider, zfs-fuse's only the top of /dev.",
    "4. `fsck -t ufs` runs as `fsck -t ext4` (ext4 stands for UFS in this project's labs).",
    "5. /sbin/ggated and /sbin/mount exist in the node (an overlay on Debian's /usr/sbin: "
    "the simulated ggated, Linux mount); /root/images and /home/sites are node-private dirs.",
    "6. Server_A's and Server_B's addresses are 192.168.1.100 and .101 in the simulator, as "
    "in the seed; logger has no /dev/log in the node (its messages are dropped).",
)
__doc__ += "\n".join("  " + a for a in ADAPTATIONS) + "\n"

BASELINES = os.path.normpath(os.path.join(ROOT, "..", "shared", "baselines"))
LATENCY = 0.030                       # seconds, each simulated FreeBSD tool call
SIM_TOOLS = ("hastctl", "gmirror", "ggatec", "mdconfig")
TARGET = 10.0
SOURCED = 'enable -n [ test; . "$0" "$@"'

TEST_SHIM = """#!/bin/sh
# bench/baselines.py adaptation 1: a leading -c (character special) means -e here
case "$1" in
-c) shift; set -- -e "$@" ;;
!) if [ "$2" = -c ]; then shift 2; set -- ! -e "$@"; fi ;;
esac
case "$0" in *\\[) exec /usr/bin/[ "$@" ;; esac
exec /usr/bin/test "$@"
"""
ZPOOL_SHIM = """#!/bin/sh
# bench/baselines.py adaptation 3: FreeBSD's zpool import searches /dev/hast/* too
if [ "$1" = import ]; then
  case " $* " in *" -d "*) ;; *) shift; set -- import -d /dev/hast "$@" ;; esac
fi
exec /usr/sbin/zpool "$@"
"""
FSCK_SHIM = """#!/bin/sh
# bench/baselines.py adaptation 4: UFS is ext4 here
if [ "$1" = -t ] && [ "$2" = ufs ]; then shift 2; set -- -t ext4 "$@"; fi
exec /usr/sbin/fsck "$@"
"""
DEV_NODES = "null c 1 3,zero c 1 5,full c 1 7,random c 1 8,urandom c 1 9,tty c 5 0," \
            "fuse c 10 229,loop-control c 10 237"
MAKE_DEV = """
import os, stat, sys
for spec in sys.argv[1].split(","):
    name, kind, major, minor = spec.split()
    mode = stat.S_IFCHR if kind == "c" else stat.S_IFBLK
    os.mknod("/dev/" + name, 0o666 | mode, os.makedev(int(major), int(minor)))
for i in range(int(sys.argv[2])):
    os.mknod(f"/dev/loop{i}", 0o660 | stat.S_IFBLK, os.makedev(7, i))
for name, target in zip(sys.argv[3::2], sys.argv[4::2]):
    os.symlink(target, "/dev/" + name)
os.mkdir("/dev/shm")
"""


def write(path: str, text: str, mode: int = 0o644) -> str:
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)
    return path


class Box:
    """One sandbox node prepared for both the scripts and hahooks (adaptations 2, 5)."""

    def __init__(self, lab, world, name: str, tools: str, *, zfs=False, addr=None,
                 loops=0, private=()):
        self.world, self.name = world, name
        world.add_node(name, addr)
        self.simdev = world.dev_dir(name)
        for sub in ("hast", "mirror"):
            os.makedirs(os.path.join(self.simdev, sub), exist_ok=True)
        self.node = node = lab.node(name, zfs=zfs)
        links = [a for n in ("hast", "mirror", "md0", "ggate0")
                 for a in (n, os.path.join(self.simdev, n))]
        node.enter(["mount", "-t", "tmpfs", "-o", "mode=755,size=1m", "blpart1dev", "/dev"])
        node.enter([sys.executable, "-c", MAKE_DEV, DEV_NODES, str(loops), *links])
        sbin = os.path.join(tools, "sbin")
        node.enter(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={sbin}:/usr/sbin", "/usr/sbin"])
        for path, source in private:          # e.g. /root/images <- a shared host dir
            node.enter(["mount", "-t", "tmpfs", "-o", "size=1m", "blpart1",
                        os.path.dirname(path)])
            node.enter(["mkdir", "-p", path])
            if source:
                node.enter(["mount", "--bind", source, path])
        if zfs:
            node.start_zfs()
        self.env = world.node_env(name, base=lab.node_env(node))
        self.env["PATH"] = os.path.join(tools, "bin") + os.pathsep + self.env["PATH"]

    def run(self, *argv, check=True, timeout=120):
        return self.node.run([str(a) for a in argv], check=check, timeout=timeout,
                             env=self.env)

    def timed(self, argv, timeout=120) -> tuple[float, object]:
        t0 = time.perf_counter()
        proc = self.node.run([str(a) for a in argv], check=False, timeout=timeout,
                             env=self.env)
        return time.perf_counter() - t0, proc

    def mounted(self, *under: str) -> list[str]:
        return sorted(mp for _, mp, _ in self.node.mounts() if mp.startswith(under))


def shims(parent: str, world) -> str:
    """bin/ (first on PATH) and sbin/ (the overlay on /usr/sbin) for every node."""
    tools = os.path.join(parent, "tools")
    for sub in ("bin", "sbin"):
        os.makedirs(os.path.join(tools, sub))
    for name, text in (("[", TEST_SHIM), ("test", TEST_SHIM), ("zpool", ZPOOL_SHIM),
                       ("fsck", FSCK_SHIM)):
        write(os.path.join(tools, "bin", name), text, 0o755)
    os.symlink(os.path.join(world.bin_dir, "ggated"), os.path.join(tools, "sbin", "ggated"))
    os.symlink("/usr/bin/mount", os.path.join(tools, "sbin", "mount"))
    return tools


def script(name: str, *args) -> list[str]:
    path = os.path.join(BASELINES, name)
    if not os.path.isfile(path):
        raise RuntimeError(f"{path}: not found (the users' scripts, ../shared/baselines)")
    return ["bash", "-c", SOURCED, path, *args]


def config(path: str, box: Box, parent: str, layers: str) -> list[str]:
    d = os.path.join(parent, f"hh-{box.name}")
    os.makedirs(d, exist_ok=True)
    write(path, f'[node]\nname = "{box.name}"\nplatform = "freebsd"\n'
          f'dev_dir = "{box.simdev}"\nstate_dir = "{d}/state"\nlog_file = "{d}/log.jsonl"\n'
          f'syslog = false\n' + layers, 0o600)
    return [sys.executable, "-m", "hahooks", "{role}", "-q", "-c", path]


def layer(name: str, kind: str, **params) -> str:
    from hahooks.drill.tomlout import dumps

    return "\n" + dumps({"resource": [{"name": name, "kind": kind, **params}]})


def hahooks(argv: list[str], role: str) -> list[str]:
    return [a.replace("{role}", role) for a in argv]


def checked(box: Box, argv, what: str, timeout=120) -> float:
    took, proc = box.timed(argv, timeout)
    if proc.returncode:
        raise RuntimeError(f"{what} on {box.name} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return took


class Sample:
    """Walls and end states of one figure: script vs hahooks, one direction."""

    def __init__(self, label: str, direction: str):
        self.label, self.direction = label, direction
        self.walls = {"script": [], "hahooks": []}
        self.states = {"script": set(), "hahooks": set()}
        self.unmeasurable = ""

    def add(self, who: str, wall: float, state) -> None:
        self.walls[who].append(wall)
        self.states[who].add(repr(state))

    def figure(self) -> Figure:
        h = statistics.median(self.walls["hahooks"])
        name = f"{self.label} {self.direction}"
        if self.unmeasurable:
            return Figure("1 seed scripts", f"{name} (hahooks {h:.2f} s, script never ends)",
                          float("nan"), "x", f">= {TARGET:g}x", None, note=self.unmeasurable)
        s = statistics.median(self.walls["script"])
        same = self.states["script"] == self.states["hahooks"] and \
            len(self.states["script"]) == 1
        note = "same end state" if same else (
            f"end states differ: script {' / '.join(sorted(self.states['script']))}; hahooks "
            f"{' / '.join(sorted(self.states['hahooks']))}")
        ratios = [a / b for a, b in zip(self.walls["script"], self.walls["hahooks"])]
        return Figure("1 seed scripts", f"{name} (hahooks {h:.2f} s vs script {s:.2f} s)",
                      s / h, "x", f">= {TARGET:g}x", same and s / h >= TARGET,
                      min(ratios), max(ratios), note + f"; {len(ratios)} runs")


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
    waits.wait_for(lambda: all(map(os.path.exists, devs)), 10, "HAST devices on nodea")
    a.run("zpool", "create", "-m", mnt, POOL, "raidz1", *devs)
    a.run("zpool", "export", POOL)
    a.run("hastctl", "role", "secondary", *DISKS)
    hh = config(os.path.join(parent, "seed003.toml"), a, parent,
                layer("hast", "hast", resources=list(DISKS)) +
                layer("zhast", "zpool", pool=POOL,
                      import_dirs=[os.path.join(a.simdev, "hast")]))

    def state():
        pools = a.run("zpool", "list", "-H", "-o", "name").stdout.split()
        roles = "/".join(world.hast_role(d, "nodea") for d in DISKS)
        return f"roles {roles}, pools {pools or '-'}, mounts {a.mounted(mnt) or '-'}"
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


def run(args) -> list[Figure]:
    """Issue 7 part 1 for bench/run.py."""
    if os.geteuid() != 0:
        raise RuntimeError("part 1 needs root (namespaces, mounts, zfs-fuse)")
    quick = getattr(args, "quick", False)
    runs = getattr(args, "runs", None) or (1 if quick else 3)
    from hahooks.sandbox import Lab
    from hahooks.sim import World

    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="blpart1-", dir="/var/tmp") as parent:
        for label, fn in (("seed003", seed003),):
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
