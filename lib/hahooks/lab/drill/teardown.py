"""Ending a sandbox cluster: tear everything down (nothing left behind, also after a failure
or Ctrl-C), or with --keep leave the nodes running and say how to enter them; and the
kernel state a crashed node must release before anyone else mounts its images."""
from __future__ import annotations

import glob
import os
import shlex
import shutil

from hahooks import waits
from hahooks.errors import WaitTimeout
from hahooks.lab.sandbox.nsproc import host, tool
from hahooks.lab.sim import checks

RELEASE_TIMEOUT = 30.0


def keep(cluster) -> str:
    """Leave the nodes up; return how to enter each one and how to tear it down later."""
    if cluster.desk:
        cluster.desk.stop()
    lines = ["sandbox kept (--keep): the nodes run on after this command ends"]
    for node in cluster.nodes:
        if node not in cluster.down:
            lines.append(f"  enter {node}: {enter_script(cluster, node)}   (then e.g. "
                         "hahooks status; hahooks history)")
    lines.append(f"  files: {cluster.workdir}")
    lines.append(f"  tear down: {cluster.lab.release()} && rm -rf {cluster.workdir}")
    return "\n".join(lines)


def remove(cluster) -> str:
    """Stop the client, the nodes, the simulated world; wait until the kernel let go of
    loop devices and FUSE mounts; then delete the work dir. Returns the problems, if any."""
    errors = []
    if cluster.desk:
        cluster.desk.stop()
    try:
        if cluster.service:
            cluster.service.stop_client(cluster)
    except Exception as exc:  # teardown goes on whatever happens
        errors.append(f"client: {exc}")
    if cluster.lab is not None:
        try:
            cluster.lab.cleanup()
        except Exception as exc:
            errors.append(f"lab: {exc}")
    if cluster.world is not None:
        try:
            cluster.world.close()
        except Exception as exc:
            errors.append(f"world: {exc}")
    try:
        wait_released(images(cluster.workdir, cluster.root), timeout=15)
    except Exception as exc:
        errors.append(f"kernel state: {exc}")
    if not errors and not os.environ.get("HAHOOKS_DRILL_KEEP_FILES") and \
            not mounts_under(cluster.workdir):     # never delete through a live mount
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    return ("teardown problems: " + "; ".join(errors)) if errors else ""


def enter_script(cluster, node: str) -> str:
    """A script that opens a shell in the node with the drill's environment."""
    path = os.path.join(cluster.places[node].private, "enter")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in cluster.env(node).items())
    enter = cluster.handles[node].enter_hint().rsplit(" -- ", 1)[0]
    with open(path, "w") as fh:
        fh.write(f"#!/bin/sh\n# a shell in sandbox node {node}, with its hahooks, simulated "
                 "tools and config\n"
                 f"exec env -i {env} {enter} -- \"${{@:-bash}}\"\n")
    os.chmod(path, 0o755)
    return path


def mounts_under(path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


# -- kernel state of a crashed node -------------------------------------------------------
def images(workdir: str, root: str) -> list[str]:
    """Every backing file a node may have mounted, attached or opened: the simulator's
    images under `workdir` and the disk images under the sandbox `root`."""
    found = glob.glob(os.path.join(workdir, "world", "images", "*"))
    found += glob.glob(os.path.join(root, "**", "*.img"), recursive=True)
    return [p for p in found if os.path.isfile(p)]


def _loops_not_mounted(paths: list[str]) -> list[str]:
    """Loop devices backed by one of `paths` that no live mount namespace mounts: what a
    dead node left behind."""
    idents = {checks.identity(p) for p in paths} - {None}
    attached = [d for d in checks._loop_devices() if checks.loop_backing(d) in idents]
    if not attached:
        return []
    mounted = set()
    for info in glob.glob("/proc/[0-9]*/mountinfo"):
        try:
            with open(info) as fh:
                for line in fh:
                    mounted.add(line.split(" - ")[1].split()[1] if " - " in line else "")
        except OSError:
            continue
    return [d for d in attached if d not in mounted]


def wait_released(paths: list[str], timeout: float = RELEASE_TIMEOUT) -> None:
    """After a crash: the dead node's mounts go with its mount namespace and its loop
    devices (mount's autoclear) once the kernel let go of them; wait for that, so the
    survivor never mounts an image the kernel still has mounted for the dead node."""
    try:
        waits.wait_for(lambda: not _loops_not_mounted(paths), timeout,
                       "the crashed node's loop devices to be released", ceiling=0.05)
    except WaitTimeout:
        for dev in _loops_not_mounted(paths):   # not autoclear: only the dead node used it
            host([tool("losetup"), "-d", dev], check=False)
        if _loops_not_mounted(paths):
            raise
