"""Is a simulated device in use? The invariant checks behind the violation log.

A simulated device is a hard link (or symlink) to a backing image, so "the device is used"
means "that inode is used": mounted (mount(8) of a regular file sets up a loop device),
attached to a loop device without a mount, or held open by a process (zfs-fuse keeps the
vdev files of an imported pool open). Identity is (st_dev, st_ino), which survives the
unlink that destroys the device.

The mount check reads /proc/self/mountinfo: the mount namespace of the simulated command,
i.e. of the node that runs it. Loop devices are global to the machine and /proc/*/fd shows
the processes of the caller's PID namespace.
"""
from __future__ import annotations

import fcntl
import glob
import os
import struct

LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64 each),
# lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32 each), names and keys.
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32s2Q")


def identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str, str]]:
    """(source, mountpoint, fstype) of every mount in the caller's namespace."""
    found = []
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        found.append((_unescape(rest[1]), _unescape(fields[4]), rest[0]))
    return found


def loop_backing(loopdev: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file behind /dev/loopN (ioctl: exact even for deleted files)."""
    try:
        fd = os.open(loopdev, os.O_RDONLY)
    except OSError:
        return _loop_backing_sysfs(loopdev)
    try:
        buf = bytearray(_LOOP_INFO64.size)
        fcntl.ioctl(fd, LOOP_GET_STATUS64, buf)
    except OSError:
        return None
    finally:
        os.close(fd)
    info = _LOOP_INFO64.unpack(bytes(buf))
    device, inode = info[0], info[1]
    # lo_device is the kernel's encoding of the backing file's st_dev
    return (os.makedev(os.major(device), os.minor(device)), inode)


def _loop_backing_sysfs(loopdev: str) -> tuple[int, int] | None:
    name = os.path.basename(loopdev)
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            path = f.read().strip()
    except OSError:
        return None
    return identity(path.removesuffix(" (deleted)"))


def _loop_devices() -> list[str]:
    return ["/dev/" + os.path.basename(os.path.dirname(p))
            for p in glob.glob("/sys/block/loop*/loop")
            if os.path.exists(os.path.join(p, "backing_file"))]


def mounted_at(ident: tuple[int, int], paths: tuple[str, ...] = ()) -> list[str]:
    """Mountpoints (in this mount namespace) whose source is the inode `ident`."""
    hits = []
    loops: dict[str, tuple[int, int] | None] = {}
    for source, mountpoint, _fstype in mounts():
        if not source.startswith("/"):
            continue
        if source in paths:
            hits.append(mountpoint)
            continue
        if source.startswith("/dev/loop"):
            if source not in loops:
                loops[source] = loop_backing(source)
            if loops[source] == ident:
                hits.append(mountpoint)
        elif not source.startswith("/dev/") and identity(source) == ident:
            hits.append(mountpoint)
    return hits


def loop_attached(ident: tuple[int, int]) -> list[str]:
    return [dev for dev in _loop_devices() if loop_backing(dev) == ident]


def open_by(idents: set, prefixes: tuple[str, ...]) -> dict:
    """{ident: [pids]} of the processes (visible in this PID namespace) holding one of the
    inodes open. Only fd targets under `prefixes` are stat'ed, which keeps the scan cheap on
    a busy machine; one pass serves every device of a command."""
    me = os.getpid()
    found: dict = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            link = f"{fd_dir}/{fd}"
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if not target.startswith(prefixes):
                continue
            try:
                st = os.stat(link)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in idents and int(pid) not in found.setdefault(ident, []):
                found[ident].append(int(pid))
    return found


def usage_many(paths: list[str], prefixes: tuple[str, ...]) -> dict:
    """{path: [phrases]} for every path in use (see usage()); one /proc scan in all."""
    idents = {p: identity(p) for p in paths}
    idents = {p: i for p, i in idents.items() if i is not None}
    if not idents:
        return {}
    reals = tuple(os.path.realpath(p) for p in idents)
    holders = open_by(set(idents.values()), prefixes + reals)
    result = {}
    for path, ident in idents.items():
        found = [f"mounted on {m}" for m in mounted_at(ident, (path, os.path.realpath(path)))]
        if not found:
            found += [f"attached to {d}" for d in loop_attached(ident)]
        found += [f"open by pid {p}" for p in holders.get(ident, [])]
        if found:
            result[path] = found
    return result


def usage(path: str, prefixes: tuple[str, ...]) -> list[str]:
    """How the file behind `path` is used, as readable phrases; [] when unused."""
    return usage_many([path], prefixes).get(path, [])
