"""The node both sides of part 1 run in (bench/baselines.py): the adaptations that stand in
for FreeBSD, one sandbox node prepared for the users' scripts and for hahooks alike (Box),
and the commands each side runs. Nothing here differs between the script and hahooks."""
from __future__ import annotations

import os
import sys
import time

from common import ROOT

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
    "the simulated ggated, Linux mount); /root/images (both nodes: one host dir holding both "
    "images) and /home/sites are made in overlays private to the node.",
    "6. Server_A's and Server_B's addresses are 192.168.1.100 and .101 in the simulator, as "
    "in the seed; logger has no /dev/log in the node (its messages are dropped).",
)

# the users' scripts stay where they are (beside the checkout); HAHOOKS_BASELINES names
# another place for a checkout elsewhere
BASELINES = os.environ.get("HAHOOKS_BASELINES") or \
    os.path.normpath(os.path.join(ROOT, "..", "shared", "baselines"))
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
            top = os.path.dirname(path)         # an overlay: /root holds this Python
            layers = os.path.join(tools, "nodes", name, top.strip("/"))
            for sub in ("work", "upper" + path[len(top):]):
                os.makedirs(os.path.join(layers, sub))
            node.enter(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={top},"
                        f"upperdir={layers}/upper,workdir={layers}/work", top])
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
        raise RuntimeError(f"{path}: not found (the users' scripts, shared/baselines beside the checkout; "
                           "set HAHOOKS_BASELINES to their folder)")
    return ["bash", "-c", SOURCED, path, *args]


def config(path: str, box: Box, parent: str, layers: str) -> list[str]:
    d = os.path.join(parent, f"hh-{box.name}")
    os.makedirs(d, exist_ok=True)
    write(path, f'[node]\nname = "{box.name}"\nplatform = "freebsd"\n'
          f'dev_dir = "{box.simdev}"\nstate_dir = "{d}/state"\nlog_file = "{d}/log.jsonl"\n'
          f'syslog = false\n' + layers, 0o600)
    return [sys.executable, "-m", "hahooks", "{role}", "-q", "-c", path]


def layer(name: str, kind: str, **params) -> str:
    from hahooks.lab.drill.tomlout import dumps

    return "\n" + dumps({"resource": [{"name": name, "kind": kind, **params}]})


def hahooks(argv: list[str], role: str) -> list[str]:
    return [a.replace("{role}", role) for a in argv]


def checked(box: Box, argv, what: str, timeout=120) -> float:
    took, proc = box.timed(argv, timeout)
    if proc.returncode:
        raise RuntimeError(f"{what} on {box.name} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return took
