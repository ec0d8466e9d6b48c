"""The node's GEOM block server: ggate units and gmirror devices as files whose I/O really
blocks (blockio.py), owned by one small daemon per node (`geom`, the kernel's stand-in).

dev/ggateN and dev/mirror/NAME are symlinks to nodes/<n>/geom/ggateN and
nodes/<n>/geom/mirror-NAME. A ggate unit's gate stalls while its ggatec is disconnected
(docs/reference/ggate.md §4; sbin/ggate/ggatec/ggatec.c g_gatec_loop()); a mirror's backing
is its ACTIVE components, a ggate component named "@ggateN" so that its gate applies to the
mirror's writes (docs/reference/gmirror.md; sys/geom/mirror/g_mirror.c g_mirror_register_request()
sends a write to every ACTIVE disk and completes it when all answered).

The daemon is started on demand by the first tool that needs a device on the node (it may
be called under the world lock: the daemon takes no lock before it is ready), ends when the
node crashes or the world closes, and stops its blockio server (so no mount outlives it).
"""
from __future__ import annotations

import os
import signal

from hahooks.lab.sim import blockio, daemon

NAME = "geom"
HOUSEKEEPING = 0.25


def paths(store, node: str) -> tuple[str, str]:
    """(mountpoint, control file) of the node's GEOM blockio server."""
    return store.node_dir(node, "geom"), store.node_dir(node, "run", "geom.json")


def control(store, node: str) -> blockio.Control:
    return blockio.Control(paths(store, node)[1])


def device_file(store, node: str, name: str) -> str:
    return os.path.join(paths(store, node)[0], name)


def ensure(store, st: dict, node: str) -> None:
    """Start the node's server unless it runs (callers hold the world lock: serialised)."""
    if store.alive(node, NAME):
        return
    boot = st["nodes"].get(node, {}).get("boot", 0)
    if not daemon.spawn(store, node, NAME, lambda: serve(store, node, boot)):
        raise RuntimeError(f"the GEOM server of {node} did not start "
                           f"(see {store.node_dir(node, 'run', NAME + '.log')})")


def expose_link(store, node: str, name: str, link: str) -> None:
    """dev/<...> as a symlink to the server's file `name`."""
    os.makedirs(os.path.dirname(link), exist_ok=True)
    target = device_file(store, node, name)
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def serve(store, node: str, boot: int) -> None:
    mount, ctl = paths(store, node)
    server = blockio.start(mount, ctl, store.node_dir(node, "run", "geom-blockio.log"))
    fifo = store.fifo(node, NAME)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)      # ready from here on
    keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    quit_flag = []
    signal.signal(signal.SIGTERM, lambda *_: quit_flag.append(1))
    recorded = False
    try:
        while not quit_flag and os.path.isdir(store.root):
            with store.locked(write=not recorded) as st:
                me = st["nodes"].get(node)
                if not me or not me["up"] or me.get("boot", 0) != boot:
                    return
                if not recorded:
                    me["geom_pids"] = [os.getpid(), server]
                    recorded = True
            if daemon.asked_to_quit(rfd, HOUSEKEEPING):
                return
    finally:
        os.close(rfd)
        os.close(keep)
        blockio.stop(server, mount)
