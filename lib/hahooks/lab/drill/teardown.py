"""Ending a sandbox cluster: tear everything down (nothing left behind, also after a failure
or Ctrl-C), or with --keep leave the nodes running and say how to enter them."""
from __future__ import annotations

import os
import shlex
import shutil

from hahooks.lab.drill import stacks


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
        stacks.wait_released(cluster, stacks.images(cluster), timeout=15)
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
