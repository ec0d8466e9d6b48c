"""The blockio server: one process per node, a FUSE file server (mfusepy over libfuse2,
multithreaded) whose files are the node's simulated devices, each read and write passing
its gate (blockio.py describes the gates and the control file; this module is only the
server side). `python -m hahooks.lab.sim.blockio_server MOUNTPOINT CONTROL PARENT_PID` runs
it; blockio.start() does that and owns the process."""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import sys
import threading
import time

from hahooks.lab.sim.blockio import POLL, Control

PR_SET_PDEATHSIG = 1


class _Devices:
    """The control file as last read, re-read whenever its (mtime, inode, size) changed."""

    def __init__(self, path: str):
        self.path = path
        self.key = None
        self.devices: dict = {}
        self.lock = threading.Lock()

    def current(self) -> dict:
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            key = None
        with self.lock:
            if key != self.key:
                self.key = key
                self.devices = Control(self.path).read()["devices"] if key else {}
            return self.devices


def _image_io(image: str, op, *args):
    """One request on an image, opened for it alone: a held fd would keep an md unit or a
    ggated export busy for the simulated tools' in-use checks after the device is gone."""
    fd = os.open(image, os.O_RDWR)
    try:
        return op(fd, *args)
    finally:
        os.close(fd)


def _pass_gate(devices: _Devices, name: str, dev_id: int | None) -> dict:
    """Block while the device's gate stalls; the device record once I/O may go on.
    `dev_id` None: whichever device now has that name (a mirror's member)."""
    started = time.time()
    while True:
        dev = devices.current().get(name)
        if dev is None or dev_id not in (None, dev["id"]):
            raise _fuse_error(errno.ENXIO)
        gate = dev["gate"]
        state = gate["state"]
        now = time.time()
        if state == "stall" and gate.get("until") is not None and now >= gate["until"]:
            state = gate.get("then", "open")
        if state == "stall" and gate.get("expire") and now >= _expiry(gate["expire"], started):
            raise _fuse_error(gate["expire"].get("errno", errno.EIO))
        if state == "open":
            return dev
        if state == "error":
            raise _fuse_error(gate.get("errno", errno.EIO))
        time.sleep(POLL)


def _expiry(expire: dict, started: float) -> float:
    """g_gate_guard(): the first tick (anchor + k*every) at which the request is `age` old."""
    due = started + expire["age"]
    every = max(expire["every"], 1e-3)
    ticks = max(0, -(-(due - expire["anchor"]) // every))
    return expire["anchor"] + ticks * every


def _images(devices: _Devices, entry: str) -> list[str]:
    """A backing entry's image paths; "@OTHER" passes OTHER's gate first."""
    if entry.startswith("@"):
        return _pass_gate(devices, entry[1:], None)["backing"]
    return [entry]


def _member_failed(devices: _Devices, name: str, member: str, err: int) -> None:
    """The member's request failed: it leaves the device, the event goes to the control."""
    with Control(devices.path).editing() as data:
        dev = data["devices"].get(name)
        if dev and f"@{member}" in dev["backing"]:
            dev["backing"].remove(f"@{member}")
        data.setdefault("events", []).append({"device": name, "member": member,
                                              "errno": err, "time": time.time()})


def _write_all(devices: _Devices, name: str, dev: dict, data: bytes, offset: int) -> None:
    """Fan a write out to every backing entry; a failing member is dropped, not fatal."""
    import mfusepy
    done, err = 0, errno.EIO
    for entry in list(dev["backing"]):
        try:
            images = _images(devices, entry)
        except mfusepy.FuseOSError as exc:
            if not entry.startswith("@") or len(dev["backing"]) == 1:
                raise       # g_mirror keeps its last ACTIVE disk: the error goes up
            err = exc.errno
            _member_failed(devices, name, entry[1:], exc.errno)
            continue
        for image in images:
            _image_io(image, os.pwrite, data, offset)
        done += 1
    if not done:
        raise _fuse_error(err)


def _fuse_error(err: int):
    import mfusepy
    return mfusepy.FuseOSError(err)


def _operations(devices: _Devices):
    import mfusepy

    class Ops(mfusepy.Operations):
        use_ns = True

        def __init__(self):
            self.handles: dict[int, tuple[str, int]] = {}
            self.next_fh = 1
            self.mutex = threading.Lock()     # not `lock`: that is a FUSE operation's name

        def _dev(self, path: str) -> tuple[str, dict]:
            name = path.lstrip("/")
            dev = devices.current().get(name)
            if dev is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            return name, dev

        def getattr(self, path, fh=None):
            now = time.time_ns()
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0,
                        "st_atime": now, "st_mtime": now, "st_ctime": now}
            _, dev = self._dev(path)
            first = dev["backing"][0] if dev["backing"] else None
            if first and first.startswith("@"):
                first = (devices.current().get(first[1:]) or {"backing": [None]})["backing"][0]
            st = os.stat(first or devices.path)
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1,
                    "st_size": dev.get("size", st.st_size),
                    "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns,
                    "st_ctime": st.st_ctime_ns}

        def readdir(self, path, fh):
            return [".", "..", *devices.current()]

        def open(self, path, flags):
            name, dev = self._dev(path)
            with self.mutex:
                fh = self.next_fh
                self.next_fh += 1
                self.handles[fh] = (name, dev["id"])
            return fh

        def release(self, path, fh):
            with self.mutex:
                self.handles.pop(fh, None)
            return 0

        def read(self, path, size, offset, fh):
            dev = _pass_gate(devices, *self.handles[fh])
            if not dev["backing"]:
                raise mfusepy.FuseOSError(errno.ENXIO)
            return _image_io(_images(devices, dev["backing"][0])[0], os.pread, size, offset)

        def write(self, path, data, offset, fh):
            name = self.handles[fh][0]
            _write_all(devices, name, _pass_gate(devices, *self.handles[fh]), data, offset)
            return len(data)

        def fsync(self, path, datasync, fh):
            _pass_gate(devices, *self.handles[fh])
            return 0

        def flush(self, path, fh):
            return 0        # close(2) never waits on the gate

        def truncate(self, path, length, fh=None):
            raise mfusepy.FuseOSError(errno.EPERM)

    return Ops()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)


def serve(mountpoint: str, control: str, parent: int) -> None:
    import mfusepy
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    mfusepy.FUSE(_operations(_Devices(control)), mountpoint, foreground=True, nothreads=False,
                 direct_io=True, fsname="hahooks-blockio", subtype="blockio")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
