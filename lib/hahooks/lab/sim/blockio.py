"""Simulated devices whose I/O really blocks: a small FUSE file server with gates.

FreeBSD's GEOM devices can stall: a new HAST primary's /dev/hast/NAME exists at once but its
I/O waits while hastd waits for the peer (docs/reference/hast.md; sbin/hastd/primary.c
hastd_primary(): init_ggate() before init_remote()), and a ggate device's writes hang while its
ggated is gone (sbin/ggate/ggatec/ggatec.c g_gatec_loop(), io_timeout 0). A flag the kinds could
read would not show that; this module makes a read(2)/write(2) on the device block in the
kernel, so mkfs, fsck, mount's loop device and zfs-fuse hang exactly as they would.

Only FUSE is available in the test kernel (no device-mapper, nbd or ublk), so each node runs one
server (mfusepy over libfuse2, multithreaded: a stalled request blocks only its caller) mounted
at a directory of its own; every exposed device is a regular file there whose reads and writes
go to its backing image(s) through a *gate*:

    open    I/O goes straight to the backing image(s)
    stall   the caller blocks until the gate changes; with `until` set, after that moment the
            gate acts as `then` ("open" or "error")
    error   every request fails with `errno` (EIO, ENXIO ...)

A stalled gate with `expire` fails a request at the first tick anchor + k*every at which it
waited `age` s (ggatec -t N: sys/geom/gate/g_gate.c g_gate_guard(), docs/reference/ggate.md §4).
A backing entry "@OTHER" is another device of the server (a mirror's ggate component): its
gate applies first. A write fans out to every entry; an "@" entry that fails leaves the device
and is reported in the control's `events` (sys/geom/mirror/g_mirror.c
g_mirror_regular_request_error()); the write fails only when its last entry does.

A device that is removed fails every request on handles opened before with ENXIO (GEOM's
answer once a provider is withered) and disappears from the directory; exposing the same name
again makes a new device (old handles keep failing). Writes go to every backing image, reads
come from the first one (a mirror's components hold the same bytes). The files use FUSE's
direct_io, so no page cache hides a stall.

Control: a JSON file (the `control` path, written under flock and replaced atomically) that
the server re-reads whenever it changed; any process of the world may edit it:

    c = Control(path)
    c.expose("hast-r0", ["/w/images/hast-r0.img"], gate=stall(until=t, then="open"))
    c.expose_many([(name, backings, gate), ...])       # one edit for many
    c.set_gate("hast-r0", OPEN)
    c.remove("hast-r0", ...)

Server: `start(mountpoint, control, log)` runs one in a child process (the caller owns it: the
simulated hastd of the node, so it lives and dies with the node) and returns its pid once the
mount is up; `stop(pid, mountpoint)` ends it and detaches the mount; `detach(mountpoint)` is the
last resort for a mount whose server died (umount2 MNT_DETACH, the `fusermount -u -z` of a
root caller). `python -m hahooks.lab.sim.blockio_server MOUNTPOINT CONTROL PARENT_PID` is the
server (blockio_server.py).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

OPEN = {"state": "open"}
POLL = 0.005
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MNT_DETACH = 2
LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def stall(until: float | None = None, then: str = "open", err: int = errno.EIO) -> dict:
    """A stalled gate; after `until` (epoch seconds) it acts as `then`."""
    return {"state": "stall", "until": until, "then": then, "errno": err}


def error(err: int = errno.EIO) -> dict:
    return {"state": "error", "errno": err}


class Control:
    """The control file of one server: devices, their backing images and gates."""

    def __init__(self, path: str):
        self.path = path

    @contextlib.contextmanager
    def editing(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def read(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {"serial": 0, "devices": {}}

    def expose(self, name: str, backing: list[str], gate: dict = OPEN,
               size: int | None = None) -> None:
        """`backing`: image paths, or "@OTHER" for another device of this server; `size`:
        the length the file shows (default: the first image's)."""
        self.expose_many([(name, backing, gate)], size=size)

    def expose_many(self, devices: list[tuple[str, list[str], dict]],
                    size: int | None = None) -> None:
        """(name, backing, gate) each, in one edit."""
        with self.editing() as data:
            for name, backing, gate in devices:
                data["serial"] = data.get("serial", 0) + 1
                data["devices"][name] = {"backing": _entries(backing), "gate": gate,
                                         "id": data["serial"]}
                if size is not None:
                    data["devices"][name]["size"] = size

    def set_backing(self, name: str, backing: list[str]) -> bool:
        """Change a device's backing entries in place (open handles stay valid)."""
        with self.editing() as data:
            dev = data["devices"].get(name)
            if dev is None:
                return False
            dev["backing"] = _entries(backing)
            return True

    def set_gate(self, name: str, gate: dict) -> bool:
        with self.editing() as data:
            dev = data["devices"].get(name)
            if dev is None:
                return False
            dev["gate"] = gate
            return True

    def take_events(self) -> list[dict]:
        """The member failures the server reported since the last call (and forget them)."""
        with self.editing() as data:
            events = data.pop("events", [])
        return events

    def gate(self, name: str) -> dict | None:
        dev = self.read()["devices"].get(name)
        return dev["gate"] if dev else None

    def remove(self, *names: str) -> bool:
        """True when every one of them existed."""
        with self.editing() as data:
            return all([data["devices"].pop(n, None) is not None for n in names])


def _entries(backing: list[str]) -> list[str]:
    return [b if b.startswith("@") else os.path.abspath(b) for b in backing]


def mounted(mountpoint: str) -> bool:
    """From mountinfo: a mount whose server died fails stat() with ENOTCONN, so
    os.path.ismount() would call it unmounted."""
    from hahooks.lab.sim.checks import mounts
    target = os.path.realpath(mountpoint)
    return any(mp == target for _src, mp, _fs in mounts())


def detach(mountpoint: str) -> bool:
    """Lazily unmount (MNT_DETACH): works even when the server died (ENOTCONN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.umount2(os.fsencode(mountpoint), MNT_DETACH) == 0


def start(mountpoint: str, control: str, log: str | None = None) -> int:
    """Run a server for `control` at `mountpoint` in a child process; its pid once mounted.
    A stale mount left there by a dead server is detached first. The server ends when the
    caller dies (PR_SET_PDEATHSIG and a parent watch), so it lives and dies with its node."""
    os.makedirs(mountpoint, exist_ok=True)
    while mounted(mountpoint) and detach(mountpoint):
        pass
    env = dict(os.environ)
    env["PYTHONPATH"] = LIB + os.pathsep + env.get("PYTHONPATH", "")
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([sys.executable, "-m", "hahooks.lab.sim.blockio_server", mountpoint,
                                 control, str(os.getpid())], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, close_fds=True)
    finally:
        if log:
            out.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if mounted(mountpoint):
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(POLL)
    stop(proc.pid, mountpoint)
    raise RuntimeError(f"blockio server for {mountpoint} did not come up (see {log})")


def stop(pid: int, mountpoint: str) -> None:
    """End the server (SIGTERM: libfuse unmounts), reap it, and detach what remains."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:      # not our child: wait for it to vanish
            done = pid if _gone(pid) else 0
        if done:
            break
        time.sleep(POLL)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    while mounted(mountpoint) and detach(mountpoint):
        pass


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: its parent reaps it, not us)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
