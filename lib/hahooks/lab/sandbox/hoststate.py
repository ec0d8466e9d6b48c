"""What a lab leaves on the host, and how a later process finds and removes it.

Why it is built this way:
* A prefix is locked with flock for a Lab's lifetime (/run/lock/hahooks-sandbox/), so two
  live labs never share one, and whoever holds the lock may remove "<prefix>-*" remnants
  of a dead lab (SIGKILLed test, `hahooks drill --keep`) without touching anyone else's.
* The lab keeps a manifest (<workdir>/lab.json: netns, loop devices, node inits with their
  start times) so `python3 -m hahooks.lab.sandbox cleanup DIR` can tear down a lab whose
  process is gone, including nodes without a network namespace.
* Loop devices are detached only while they still back onto our file: loop numbers are
  handed to other labs the moment they are free.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os

from hahooks import waits
from hahooks.errors import WaitTimeout
from hahooks.lab.sandbox import nsproc
from hahooks.lab.sandbox.nsproc import SandboxError, host, tool

log = logging.getLogger("hahooks.lab.sandbox")

LOCK_DIR = "/run/lock/hahooks-sandbox"
MANIFEST = "lab.json"


def lock_prefix(prefix: str) -> int:
    """An fd holding the prefix lock (release with unlock_prefix), or SandboxError."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, prefix + ".lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise SandboxError(f"lab prefix {prefix!r} is in use by another live lab "
                               f"(pid {owner or '?'}): pick another prefix") from None
        try:                 # the holder unlinks the file on release: lock the live one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_prefix(prefix: str, fd: int) -> None:
    try:
        os.unlink(os.path.join(LOCK_DIR, prefix + ".lock"))
    except FileNotFoundError:
        pass
    os.close(fd)


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except OSError:
        return []


def list_loops() -> list[tuple[str, str]]:
    """(/dev/loopN, backing file) of every attached loop device."""
    out = []
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return out
    for name in names:
        if name.startswith("loop"):
            backing = loop_backing(f"/dev/{name}")
            if backing:
                out.append((f"/dev/{name}", backing))
    return out


def loop_backing(dev: str) -> str | None:
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/loop/backing_file") as fh:
            return fh.read().strip().removesuffix(" (deleted)")
    except OSError:
        return None


def detach_loop(dev: str, path: str, timeout: float = 15) -> None:
    """losetup -d while the device still backs onto `path`, then wait until the kernel has
    let it go (a busy device is only marked for auto-clear)."""
    if loop_backing(dev) != path:
        return
    host([tool("losetup"), "-d", dev], check=False)
    try:
        waits.wait_for(lambda: loop_backing(dev) != path, timeout, f"{dev} to detach",
                       ceiling=0.1)
    except WaitTimeout:
        raise SandboxError(f"{dev} ({path}) is still attached (in use: mounted or open "
                           "somewhere)") from None


def netns_members(name: str):
    """(list_members, is_member) for the processes in network namespace `name`;
    /run/netns/<name> pins its inode while we match on it."""
    path = f"/run/netns/{name}"
    ino = nsproc.ns_inode_of_path(path)

    def member(pid: int) -> bool:
        return ino is not None and os.path.exists(path) and nsproc.ns_inode(pid, "net") == ino
    return (lambda: [p for p in nsproc.all_pids() if p != os.getpid() and member(p)]), member


def delete_netns(name: str, grace: float) -> None:
    if not os.path.exists(f"/run/netns/{name}"):
        return
    members, is_member = netns_members(name)
    nsproc.end_members(members, is_member, grace=grace)
    host(["ip", "netns", "del", name])


def end_pid_namespace(holder: int, started: int | None, grace: float) -> None:
    """End every process in the PID namespace whose init is `holder` (if that is still the
    same process), the namespace pinned by an fd meanwhile."""
    try:
        fd = os.open(f"/proc/{holder}/ns/pid", os.O_RDONLY)
    except OSError:
        return
    try:
        if not nsproc.same_process(holder, started):
            return
        ino = os.fstat(fd).st_ino

        def member(pid: int) -> bool:
            return nsproc.ns_inode(pid, "pid") == ino
        nsproc.end_members(lambda: [p for p in nsproc.all_pids() if member(p)], member,
                           grace=grace, spare=[holder])
    finally:
        os.close(fd)


def write_manifest(lab) -> None:
    data = {"prefix": lab.prefix, "workdir": lab.workdir, "owner": os.getpid(),
            "netns": list(lab._netns), "loops": [list(x) for x in lab._loops],
            "nodes": {n.name: [n.holder_pid, n._holder_start] for n in lab.nodes.values()
                      if n.alive}}
    path = os.path.join(lab.workdir, MANIFEST)
    if not os.path.isdir(lab.workdir):
        return
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)


def read_manifest(workdir: str) -> dict:
    try:
        with open(os.path.join(workdir, MANIFEST)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def purge(prefix: str, workdir: str, grace: float = 3.0) -> list[str]:
    """Remove what a dead lab with this prefix left (call with the prefix lock held).
    Returns what was removed."""
    done = []
    manifest = read_manifest(workdir)
    if manifest.get("prefix") == prefix:
        for name, (holder, started) in manifest.get("nodes", {}).items():
            if holder and nsproc.same_process(holder, started):
                end_pid_namespace(holder, started, grace)
                done.append(f"node {name} (init {holder})")
    for ns in list_netns():
        if ns.startswith(prefix + "-"):
            delete_netns(ns, grace)
            done.append(f"netns {ns}")
    for dev, backing in list_loops():
        if backing.startswith(workdir.rstrip("/") + "/"):
            detach_loop(dev, backing)
            done.append(f"loop {dev} ({backing})")
    for what in done:
        log.warning("removed a stale sandbox remnant: %s", what)
    return done
