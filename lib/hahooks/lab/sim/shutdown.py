"""Stopping a world's node daemons (hastd, ggated, ggatec loops, the blockio and GEOM
servers): asked to quit through their fifos, killed when they do not, and no FUSE mount of
a dead server left behind. World.close() and World.crash() use it (world.py)."""
from __future__ import annotations

import os
import signal
import time

from hahooks.lab.sim import blockio
from hahooks.lab.sim.state import blockio_paths

POLL = 0.01
CLOSE_TIMEOUT = 5.0


def stop_all(store, root: str) -> None:
    """Stop every node daemon of the world at `root`: a "q" on each fifo, a kill for those
    still alive after CLOSE_TIMEOUT, then every node's FUSE mounts detached."""
    nodes = os.listdir(store.path("nodes"))
    daemons = [(n, f[:-len(".fifo")]) for n in nodes
               for f in sorted(os.listdir(store.node_dir(n, "run"))
                               if os.path.isdir(store.node_dir(n, "run")) else [])
               if f.endswith(".fifo")]
    for node, daemon in daemons:
        try:
            fd = os.open(store.fifo(node, daemon), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, b"q")
        finally:
            os.close(fd)
    deadline = time.monotonic() + CLOSE_TIMEOUT
    while time.monotonic() < deadline and any(store.alive(*d) for d in daemons):
        time.sleep(POLL)
    for node in nodes:
        if any(store.alive(n, d) for n, d in daemons if n == node):
            kill_recorded(store, root, node)
        detach_blockio(store, node)


def kill_recorded(store, root: str, node: str) -> None:
    """End the node's daemons if they run in our PID namespace (the drill kills its own)."""
    with store.locked() as st:
        pids = [st["nodes"].get(node, {}).get("hastd_pid"),
                st["nodes"].get(node, {}).get("blockio_pid"),
                st.get("ggated_pids", {}).get(node),
                *st["nodes"].get(node, {}).get("geom_pids", []),
                *[u.get("pid") for u in st.get("ggate", {}).get(node, {}).values()]]
    for pid in pids:
        if pid and _is_sim_daemon(pid, root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def detach_blockio(store, node: str) -> None:
    """No mount of a dead blockio server may outlive the node (nor block the test's
    clean-up): detach it lazily, as `fusermount -u -z` would (our mount namespace)."""
    from hahooks.lab.sim import geom
    for mount in (blockio_paths(store, node)[0], geom.paths(store, node)[0]):
        while blockio.mounted(mount) and blockio.detach(mount):
            pass


def _is_sim_daemon(pid: int, root: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return False
    return f"HAHOOKS_SIM_ROOT={root}".encode() in env
