"""The simulated world on disk: one directory shared by every simulated node.

Layout of HAHOOKS_SIM_ROOT:
    world.json        the state (roles, mirrors, units, ...), rewritten atomically
    world.lock        fcntl.flock guard: every simulated command reads/writes under it
    faults.json       fault-injection and latency rules (read by every simulated command)
    violations.jsonl  the invariant log (one JSON object per line, appended)
    commands.jsonl    every simulated command: node, argv, start, end, exit code
    images/           backing images (one per HAST/DRBD resource: the replicated data)
    bin/              launchers put first on PATH (written by World)
    nodes/<n>/dev     the node's device directory ([node] dev_dir points here)
    nodes/<n>/run     the node's daemon FIFOs (liveness is "a reader holds the FIFO")

Only the standard library is imported here: every simulated command is a process and
benchmarks run hundreds of them.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time

STATE = "world.json"
LOCK = "world.lock"
VIOLATIONS = "violations.jsonl"
COMMANDS = "commands.jsonl"

DEFAULT_SETTINGS = {
    # docs/reference/hast.md §3: the primary worker creates /dev/hast/X after hastctl returned.
    "hast_device_delay": 0.1,
    # hast.conf `timeout` (docs/reference/hast.md; sbin/hastd/primary.c hastd_primary()): how
    # long a new primary's I/O stalls while it waits for a connected primary peer to become
    # secondary ("starting anyway" after it) or tries to reach a peer that is down or cut off
    # without a TCP reset (proto_connect_wait(conn, hr_timeout)).
    "hast_peer_primary_wait": 20.0,
    # sbin/hastd/secondary.c: proto_timeout(hr_remotein, 2 * HAST_KEEPALIVE): the secondary
    # worker outlives a crashed or cut-off primary peer by this long.
    "hast_secondary_timeout": 20.0,
    # dirty bytes drain at this rate while a primary is connected to its secondary.
    "hast_sync_rate": 1 << 30,
    # gmirror rebuild speed (bytes/s): drives the (SYNCHRONIZING, NN%) figure.
    "gmirror_sync_rate": 1 << 30,
    # kern.geom.mirror.timeout: how long a tasted mirror waits STARTING for its other disks.
    "gmirror_timeout": 4.0,
    # nodes whose `gmirror status` has the FreeBSD <= 8 component form ("prov (NN%)");
    # True: every node. See sim/gmirror.py status().
    "gmirror_old_format": [],
    # DRBD resync speed after a reconnect (bytes/s).
    "drbd_sync_rate": 1 << 30,
    # DRBD kernel: "8.4" (drbdadm role "Local/Peer") or "9" (role prints the local role only).
    "drbd_version": "8.4",
}


def empty_state() -> dict:
    return {"version": 1, "settings": dict(DEFAULT_SETTINGS), "nodes": {}, "partitions": [],
            "hast": {}, "drbd": {}, "gmirror": {}, "ggate": {}, "ggated": {}, "md": {},
            "sysctl": {}}


class SimError(Exception):
    """A problem with the simulator's own set-up (not a simulated tool's error)."""


def root_from_env() -> str:
    root = os.environ.get("HAHOOKS_SIM_ROOT")
    if not root:
        raise SimError("HAHOOKS_SIM_ROOT is not set (the simulated world's directory)")
    return root


class Store:
    """Locked access to world.json. `with store.locked(write=True) as st:` saves on exit."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def node_dir(self, node: str, *parts: str) -> str:
        return os.path.join(self.root, "nodes", node, *parts)

    def dev_dir(self, node: str) -> str:
        return self.node_dir(node, "dev")

    @contextlib.contextmanager
    def locked(self, write: bool = False):
        fd = os.open(self.path(LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            state = self._load()
            yield state
            if write:
                self._save(state)
        finally:
            os.close(fd)   # closing releases the flock

    def read(self) -> dict:
        with self.locked() as st:
            return st

    def _load(self) -> dict:
        try:
            with open(self.path(STATE)) as f:
                return json.load(f)
        except FileNotFoundError:
            return empty_state()

    def _save(self, state: dict) -> None:
        tmp = self.path(f".{STATE}.{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.path(STATE))

    # -- append-only logs --------------------------------------------------------------
    def append(self, name: str, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.path(name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)   # one write() with O_APPEND: lines never interleave
        finally:
            os.close(fd)

    def read_log(self, name: str) -> list[dict]:
        try:
            with open(self.path(name)) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def violation(self, kind: str, detail: str, node: str | None = None,
                  **extra) -> dict:
        record = {"time": time.time(), "kind": kind, "detail": detail, "node": node,
                  "cmd": " ".join(sys.argv[1:]) if node else None, **extra}
        self.append(VIOLATIONS, record)
        return record

    # -- node daemons: a FIFO with a reader means "the daemon is alive" -----------------
    def fifo(self, node: str, daemon: str) -> str:
        return self.node_dir(node, "run", f"{daemon}.fifo")

    def kick(self, node: str, daemon: str) -> bool:
        """Wake a node daemon (works across PID/mount namespaces: only the path is shared).
        Returns False when no daemon holds the FIFO."""
        try:
            fd = os.open(self.fifo(node, daemon), os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return False
            raise
        try:
            os.write(fd, b"k")
        except BlockingIOError:
            pass   # the FIFO is full of earlier kicks: the daemon will wake anyway
        finally:
            os.close(fd)
        return True

    def alive(self, node: str, daemon: str) -> bool:
        try:
            fd = os.open(self.fifo(node, daemon), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        os.close(fd)
        return True


def node_state(st: dict, node: str) -> dict:
    """The node's record (created on first mention, addresses 10.99.0.N in mention order)."""
    nodes = st["nodes"]
    if node not in nodes:
        nodes[node] = {"addr": f"10.99.0.{len(nodes) + 1}", "up": True, "hastd": "running",
                       "hastd_workers": {}, "boot": 0}
    return nodes[node]


def partitioned(st: dict, a: str, b: str) -> bool:
    return sorted((a, b)) in [sorted(p) for p in st.get("partitions", [])]


def connected(st: dict, a: str, b: str) -> bool:
    """Both nodes up and the link between them not cut."""
    na, nb = st["nodes"].get(a), st["nodes"].get(b)
    return bool(na and nb and na["up"] and nb["up"] and not partitioned(st, a, b))


def link_device(image: str, device: str) -> None:
    """Make `device` show `image`'s data: a hard link when possible (a loop device set up by
    mount then names the node's own device path), else a symlink (image on another fs)."""
    os.makedirs(os.path.dirname(device), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(device)
    try:
        os.link(image, device)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        os.symlink(os.path.abspath(image), device)


def blockio_paths(store: Store, node: str) -> tuple[str, str]:
    """(mountpoint, control file) of the node's blockio server (blockio.py)."""
    return store.node_dir(node, "blockio"), store.node_dir(node, "run", "blockio.json")


def unlink_device(device: str) -> bool:
    try:
        os.unlink(device)
        return True
    except FileNotFoundError:
        return False


def make_image(path: str, size: int) -> None:
    """A sparse backing image of `size` bytes (kept if it exists: data survives re-adds)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.truncate(size)


def syslog(store, node: str, tool: str, msg: str) -> None:
    """A line in the node's syslog (nodes/<n>/run/syslog.log): what the tools log there."""
    path = store.node_dir(node, "run", "syslog.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write(f"{time.strftime('%b %d %H:%M:%S')} {node} {tool}[{os.getpid()}]: {msg}\n")
