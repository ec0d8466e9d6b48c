"""Fault shims for the real tools (zpool, mount, fsck, the service's rc command, ...).

The simulated FreeBSD tools read the simulator's fault rules themselves. To break a real
tool's step the same way, the drill puts a shim named like the tool first on the node's
PATH: it applies the rules (latency, fail with an exit code, hang until killed) to its own
command line, then execs the real tool with the same arguments. Without a matching rule it
only adds its start-up time (docs/performance.md), so shims are installed only for fault
runs.
"""
from __future__ import annotations

import os
import shutil
import sys

LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
TOOLS = ("zpool", "zfs", "mount", "umount", "fsck", "fsck.ext4", "e2fsck", "mariadb-drill",
         "nginx", "losetup")
SHIM = """#!{python} -S
# hahooks drill fault shim for {tool}: apply the simulator's fault rules, then exec {real}
import os, sys
sys.path.insert(0, {lib!r})
root, node = os.environ.get("HAHOOKS_SIM_ROOT"), os.environ.get("HAHOOKS_SIM_NODE")
if root and node:
    from hahooks.lab.sim import faults
    faults.before(root, " ".join([{tool!r}, *sys.argv[1:]]), node)
os.execv({real!r}, [{tool!r}, *sys.argv[1:]])
"""


def install(shim_dir: str, search_path: str, tools=TOOLS) -> list[str]:
    """Write a shim for each tool found on `search_path` (never on shim_dir itself)."""
    os.makedirs(shim_dir, exist_ok=True)
    dirs = [d for d in search_path.split(os.pathsep) if os.path.abspath(d) !=
            os.path.abspath(shim_dir)]
    made = []
    for tool in tools:
        real = shutil.which(tool, path=os.pathsep.join(dirs))
        if not real:
            continue
        path = os.path.join(shim_dir, tool)
        with open(path, "w") as fh:
            fh.write(SHIM.format(python=sys.executable, lib=LIB, tool=tool, real=real))
        os.chmod(path, 0o755)
        made.append(tool)
    return made
