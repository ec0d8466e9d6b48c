"""2. Against the critical path, 3. Scale: `hahooks master` / `hahooks slave` on simulated
HAST resources (fixed 30 ms per hastctl call, the simulator's device delay) with real ext4
filesystems on the HAST device files (mount sets up the loop device), against the lower
bound: the longest chain of commands that must run one after another, run directly by a
bare shell script with no checks:

  master   hastctl role primary R1..Rn  ->  every /dev/hast/Ri appears  ->
           for each filesystem, at the same time: fsck -p, mount
  slave    every filesystem unmounted at the same time  ->  hastctl role secondary R1..Rn

The script's wall time is the critical path (its parallel branches run in parallel, as
hahooks' `parallel` group does, on the same cores). hahooks runs the same stack from a
config: one `hast` layer for all resources (one `hastctl role` call), the filesystems in
one `parallel` group (fsck = "preen"), holder scans shared by the group.

  part 2: the 3-disk stack (3 HAST, 3 filesystems): target wall <= critical path + 40 ms
  part 3: 1/1, 8/4, 64/16 HAST/filesystems (full: also 8/1, 64/1, 64/4): target
          <= 1.5 x critical path at 64/16; the table shows how the wall grows
  Each is measured: `--wait` (Heartbeat, OCF, a person) cold and through the express lane
  of a warm `hahooks agent`, and `--detach` (devd, keepalived) from the hook's start until
  the stack converged, by a cold worker and by the agent (lane off and on).

Run (root): python3 bench/critical_path.py [--quick] [--runs N] [--json FILE]
Each run is master then slave, alternating with the bare scripts; figures are medians
after one warm-up run. Everything lives under a temporary dir prefixed "hhcp"."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import Figure, WarmAgent, detached_until_done, env_with_lib, machine

HASTCTL_LATENCY = 0.030     # seconds, every simulated hastctl call
DEVICE_DELAY = 0.1          # the simulator's default: role primary -> /dev/hast/X

NODE = """\
[node]
name = "nodea"
dev_dir = "{dev_dir}"
state_dir = "{d}/state"
log_file = "{d}/hahooks.jsonl"
syslog = false
"""

BARE_MASTER = """\
#!/bin/sh
# the chain with no checks: one role call, wait for the devices, fsck + mount in parallel
hastctl role primary {names}
for dev in {devs}; do while [ ! -e "$dev" ]; do sleep 0.002; done; done
{mounts}
wait
"""
BARE_SLAVE = """\
#!/bin/sh
{umounts}
wait
hastctl role secondary {names}
"""


def sh(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True,
                          **kw)


class Stack:
    """n HAST resources (sim) with ext4 on the first n_fs of them, a hahooks config and
    the bare scripts. close() unmounts, detaches and stops everything it made."""

    def __init__(self, n_hast: int, n_fs: int, parent: str):
        from hahooks.lab.sim import World

        self.d = tempfile.mkdtemp(prefix=f"hhcp-{n_hast}-{n_fs}-", dir=parent)
        self.world = World(os.path.join(self.d, "world"), hast_device_delay=DEVICE_DELAY)
        self.names = [f"hhcp{i}" for i in range(n_hast)]
        self.images = []
        try:
            self._build(n_fs)
        except BaseException:
            self.close()
            raise

    def _build(self, n_fs: int) -> None:
        w = self.world
        for node in ("nodea", "nodeb"):
            w.add_node(node)
        for i, name in enumerate(self.names):
            image = w.add_hast(name, size_mb=16 if i < n_fs else 4)
            self.images.append(image)
            if i < n_fs:
                sh("mkfs.ext4", "-q", "-F", image)
        w.set_latency("hastctl *", HASTCTL_LATENCY)
        dev_dir = w.dev_dir("nodea")
        self.devs = [os.path.join(dev_dir, "hast", n) for n in self.names]
        self.mps = [os.path.join(self.d, "mnt", n) for n in self.names[:n_fs]]
        for mp in self.mps:
            os.makedirs(mp)
        body = NODE.format(dev_dir=dev_dir, d=self.d) + "\n[[resource]]\nname = \"disks\"\n" \
            "kind = \"hast\"\nresources = [" + ", ".join(f'"{n}"' for n in self.names) + \
            "]\nsecondary_wait = \"1s\"\n"
        for name, dev, mp in zip(self.names, self.devs, self.mps):
            body += (f"\n[[resource]]\nname = \"fs-{name}\"\nkind = \"filesystem\"\n"
                     f"device = \"{dev}\"\nmountpoint = \"{mp}\"\nfstype = \"ext4\"\n"
                     f"fsck = \"preen\"\nparallel = \"mounts\"\n")
        self.cfg = os.path.join(self.d, "hahooks.toml")
        with open(self.cfg, "w") as fh:
            fh.write(body)
        os.chmod(self.cfg, 0o600)
        names, devs = " ".join(self.names), " ".join(self.devs)
        mounts = "\n".join(f"(fsck -p -t ext4 {dev}; mount -t ext4 {dev} {mp}) &"
                           for dev, mp in zip(self.devs, self.mps))
        umounts = "\n".join(f"umount {mp} &" for mp in self.mps)
        self.bare = {}
        for role, text in (("master", BARE_MASTER.format(names=names, devs=devs, mounts=mounts)),
                           ("slave", BARE_SLAVE.format(names=names, umounts=umounts))):
            self.bare[role] = os.path.join(self.d, f"bare-{role}.sh")
            with open(self.bare[role], "w") as fh:
                fh.write(text)
        self.env = w.node_env("nodea", base=env_with_lib())
        # start from slave: every resource secondary
        sh("hastctl", "role", "secondary", *self.names, env=self.env)

    def hahooks(self, role: str) -> float:
        return self._timed([sys.executable, "-m", "hahooks", role, "-q", "-c", self.cfg])

    def detached(self, role: str, express: bool = True) -> float:
        """`--detach` until converged: a cold worker, or the agent when one runs (through
        the express lane, or with it turned off)."""
        env = self.env if express else dict(self.env, HAHOOKS_EXPRESS="0")
        return detached_until_done([sys.executable, "-m", "hahooks", role, "--detach", "-q",
                                    "-c", self.cfg], env, os.path.join(self.d, "state"))

    def bare_run(self, role: str) -> float:
        took = self._timed(["sh", self.bare[role]])
        if role == "slave":       # mount's loop devices detach themselves shortly after
            self._settle_loops()
        return took

    def _timed(self, argv) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        took = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-600:]}")
        return took

    def _settle_loops(self) -> None:
        from hahooks import waits

        waits.wait_for(lambda: not self._loops(), 10, "loop devices to detach")

    def _loops(self) -> list[str]:
        out = []
        for image in self.images:
            r = subprocess.run(["losetup", "-j", image], capture_output=True, text=True)
            out += [line.split(":", 1)[0] for line in r.stdout.splitlines() if line]
        return out

    def check_released(self) -> None:
        from hahooks import mounts

        table = mounts.read()
        left = [mp for mp in self.mps if mounts.at(table, mp) is not None]
        if left:
            raise RuntimeError(f"still mounted after slave: {left}")

    def close(self) -> None:
        from hahooks import mounts

        with contextlib.suppress(Exception):
            prefix = os.path.realpath(self.d) + "/"
            for m in sorted(mounts.read(), key=lambda m: -len(m.mountpoint)):
                if m.mountpoint.startswith(prefix):
                    if subprocess.run(["umount", m.mountpoint], capture_output=True).returncode:
                        subprocess.run(["umount", "-l", m.mountpoint], capture_output=True)
        with contextlib.suppress(Exception):
            for loop in self._loops():
                subprocess.run(["losetup", "-d", loop], capture_output=True)
        with contextlib.suppress(Exception):
            self.world.close()
        shutil.rmtree(self.d, ignore_errors=True)


def measure(n_hast: int, n_fs: int, runs: int, parent: str) -> dict:
    stack = Stack(n_hast, n_fs, parent)
    try:
        t = {k: [] for k in ("master", "slave", "bare master", "bare slave", "cold master",
                             "cold slave", "warm master", "warm slave", "agent master",
                             "agent slave", "lane master", "lane slave")}
        for i in range(runs + 1):
            samples = {"bare master": stack.bare_run("master"),
                       "bare slave": stack.bare_run("slave"),
                       "master": stack.hahooks("master")}
            samples["slave"] = stack.hahooks("slave")
            stack.check_released()
            # an event's path: --detach until converged, by a cold worker, then the agent
            samples["cold master"] = stack.detached("master")
            samples["cold slave"] = stack.detached("slave")
            stack.check_released()
            with WarmAgent(stack.cfg, stack.env, os.path.join(stack.d, "state")):
                samples["warm master"] = stack.detached("master")
                samples["warm slave"] = stack.detached("slave")
                samples["agent master"] = stack.detached("master", express=False)
                samples["agent slave"] = stack.detached("slave", express=False)
                # a waiting caller (Heartbeat, a person) through the lane: the agent's child
                samples["lane master"] = stack.hahooks("master")
                samples["lane slave"] = stack.hahooks("slave")
            stack.check_released()
            if i:
                for k, v in samples.items():
                    t[k].append(v)
        violations = [v for v in stack.world.violations()
                      if v.get("kind") != "device_removed_in_use"]
    finally:
        stack.close()
    med = {k: statistics.median(v) for k, v in t.items()}
    return {"hast": n_hast, "fs": n_fs, "runs": runs, **{f"{k} s": v for k, v in med.items()},
            "min": {k: min(v) for k, v in t.items()}, "violations": violations}


def grid(quick: bool) -> list[tuple[int, int]]:
    return [(1, 1), (8, 4), (64, 16)] if quick else \
        [(1, 1), (8, 1), (8, 4), (64, 1), (64, 4), (64, 16)]


PATHS = (("", "--wait"), ("lane ", "--wait, warm agent, express lane"),
         ("cold ", "--detach, cold worker"),
         ("agent ", "--detach, warm agent, express lane off"),
         ("warm ", "--detach, warm agent, express lane"))
FIXED_TARGET_MS = 40       # issue 22: fixed cost per transition
RATIO_TARGET = 1.5         # issue 22: 64 HAST / 16 fs


def figures(cp: dict, scale: list[dict]) -> list[Figure]:
    figs = []
    for role in ("master", "slave"):
        path = cp[f"bare {role} s"] * 1000
        for key, how in PATHS:
            wall = cp[f"{key}{role} s"] * 1000
            figs.append(Figure("2 critical path", f"3 HAST + 3 ext4: {role} {how} - critical "
                               "path", wall - path, "ms", f"<= {FIXED_TARGET_MS} ms",
                               wall - path <= FIXED_TARGET_MS,
                               note=f"wall {wall:.0f} ms, critical path {path:.0f} ms"))
    for r in scale:
        big = (r["hast"], r["fs"]) == (64, 16)
        for role in ("master", "slave"):
            path = r[f"bare {role} s"] * 1000
            for key, how in PATHS if big else PATHS[:1]:
                wall = r[f"{key}{role} s"] * 1000
                figs.append(Figure("3 scale", f"{r['hast']} HAST / {r['fs']} fs: {role} {how} / "
                                   "critical path", wall / path, "x",
                                   f"<= {RATIO_TARGET}x" if big else "",
                                   (wall / path <= RATIO_TARGET) if big else None,
                                   note=f"wall {wall:.0f} ms, critical path {path:.0f} ms"))
    return figs


def table(cp: dict, scale: list[dict]) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; hastctl {HASTCTL_LATENCY * 1000:.0f}"
             f" ms per call, device delay {DEVICE_DELAY * 1000:.0f} ms; medians of "
             f"{cp['runs']} runs. Fixed cost = wall - critical path: --wait / --detach with a "
             "cold worker / --detach with the warm agent, express lane off / on.", "",
             "| HAST / fs | role | critical path | --wait | cold worker | agent, lane off | "
             "agent, express lane |",
             "|---|---|---|---|---|---|---|"]
    for r in [cp, *scale]:
        for role in ("master", "slave"):
            path = r[f"bare {role} s"] * 1000
            cells = [f"{r[f'{key}{role} s'] * 1000 - path:+.0f} ms "
                     f"({r[f'{key}{role} s'] * 1000 / path:.2f}x)" for key, _ in PATHS]
            lines.append(f"| {r['hast']} / {r['fs']} | {role} | {path:.0f} ms | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def collect(quick: bool, runs: int | None) -> tuple[dict, list[dict]]:
    runs = runs or (2 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="hhcp-") as parent:
        cp = measure(3, 3, runs, parent)
        scale = [measure(h, f, runs, parent) for h, f in grid(quick)]
    return cp, scale


def run(args) -> list[Figure]:
    """Issue 7 parts 2 and 3 for bench/run.py."""
    if os.geteuid() != 0:
        raise RuntimeError("parts 2 and 3 need root (mount, loop devices)")
    cp, scale = collect(getattr(args, "quick", False), getattr(args, "runs", None))
    print(table(cp, scale), file=sys.stderr)
    return figures(cp, scale)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 runs, grid 1/1 8/4 64/16")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (mount, loop devices)", file=sys.stderr)
        return 1
    cp, scale = collect(args.quick, args.runs)
    print(table(cp, scale))
    for f in figures(cp, scale):
        met = "" if f.met is None else ("met" if f.met else "MISSED")
        print(f"{f.section:16} {f.name:48} {f.cell():>10}  {f.target:10} {met:6} {f.note}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                       "critical_path": cp, "scale": scale}, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
