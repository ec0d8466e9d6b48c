"""The mount table, read consistently, and questions about it.

Linux: /proc/self/mountinfo, read until two consecutive reads are equal (a read of a large
table is not atomic: resource-agents PR #1337 saw leftover mounts and false monitor errors
with 80 filesystems). Hosts without it (FreeBSD): `mount -p` (fstab format) through the
runner, under the same rule. Which table is read depends on the running kernel, not on the
configured command forms, so FreeBSD forms can be exercised on Linux.
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
import stat
import struct

log = logging.getLogger("hahooks.mounts")

MOUNTINFO = "/proc/self/mountinfo"
MAX_READS = 8
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclasses.dataclass(frozen=True)
class Mount:
    source: str        # device path, dataset name, or a pseudo source ("tmpfs")
    mountpoint: str
    fstype: str
    options: str = ""
    dev: int | None = None  # st_dev of the mounted filesystem (mountinfo major:minor)


def _unescape(field: str) -> str:
    """mountinfo and fstab write space, tab, newline and backslash as octal escapes."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`"""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        try:
            dev = os.makedev(int(major), int(minor))
        except ValueError:
            dev = None
        out.append(Mount(_unescape(tail[1]), _unescape(fields[4]), tail[0], fields[5], dev))
    return out


def parse_mount_p(text: str) -> list[Mount]:
    """FreeBSD `mount -p`: `/dev/hast/data\t/data\tufs\trw\t2 2` (fstab format)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("#"):
            out.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2],
                             fields[3] if len(fields) > 3 else ""))
    return out


def _read_proc() -> str:
    with open(MOUNTINFO, "rb") as fh:
        return fh.read().decode("utf-8", "surrogateescape")


def read(run=None) -> list[Mount]:
    """The current table. `run(argv)` -> stdout runs `mount -p` where there is no mountinfo."""
    if os.path.exists(MOUNTINFO):
        reader, parse = _read_proc, parse_mountinfo
    else:
        if run is None:
            raise RuntimeError("no /proc/self/mountinfo and no runner for `mount -p`")
        reader, parse = (lambda: run(["mount", "-p"])), parse_mount_p
    previous = reader()
    for _ in range(MAX_READS - 1):
        current = reader()
        if current == previous:
            return parse(current)
        previous = current
    log.warning("mount table kept changing over %d reads; using the last one", MAX_READS)
    return parse(previous)


def canonical(path: str) -> str:
    """A mountpoint as the kernel lists it (symlinks resolved, no trailing slash)."""
    return os.path.realpath(path.rstrip("/") or "/")


def at(table: list[Mount], mountpoint: str) -> Mount | None:
    """The mount visible at `mountpoint`: the last one listed there (mounts stack)."""
    mp = canonical(mountpoint)
    found = None
    for m in table:
        if m.mountpoint == mp:
            found = m
    return found


def below(table: list[Mount], mountpoint: str) -> list[Mount]:
    """Mounts strictly under `mountpoint` (they would be hidden by, or block, its own mount)."""
    prefix = canonical(mountpoint).rstrip("/") + "/"
    return [m for m in table if m.mountpoint.startswith(prefix)]


def device_number(device: str) -> int | None:
    try:
        st = os.stat(device)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64 each),
# lo_number, lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32 each), names and keys
_LOOP_INFO64 = "=QQQQQIIII64s64s32s2Q"


def loop_backing(source: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file behind /dev/loopN. mount(8) of a regular file (an
    image, a simulated device) makes a loop device, and mountinfo names the loop device.
    By inode, not by /sys's backing_file name: mount reuses a loop device already set up
    on the same inode under another name, and the name may be deleted."""
    name = os.path.basename(source)
    if not (source.startswith("/dev/") and name.startswith("loop")):
        return None
    try:
        fd = os.open(source, os.O_RDONLY)
    except OSError:
        return None
    try:
        buf = bytearray(struct.calcsize(_LOOP_INFO64))
        fcntl.ioctl(fd, LOOP_GET_STATUS64, buf)
    except OSError:
        return None
    finally:
        os.close(fd)
    device, inode = struct.unpack(_LOOP_INFO64, bytes(buf))[:2]
    return os.makedev(os.major(device), os.minor(device)), inode


def same_device(mount: Mount, device: str) -> bool:
    """Is `device` (a path, maybe a symlink like /dev/disk/by-id/...) what `mount` mounts?"""
    if mount.source.startswith("/") and device.startswith("/"):
        if os.path.realpath(mount.source) == os.path.realpath(device):
            return True
        backing = loop_backing(mount.source)
        if backing is not None:
            try:
                st = os.stat(device)
            except OSError:
                return False
            return backing == (st.st_dev, st.st_ino)
        rdev = device_number(device)
        return rdev is not None and rdev == mount.dev
    return mount.source == device


def of_device(table: list[Mount], device: str) -> list[Mount]:
    return [m for m in table if same_device(m, device)]


def of_pool(table: list[Mount], pool: str) -> list[Mount]:
    """Datasets of a ZFS pool that are mounted (source `pool` or `pool/...`)."""
    return [m for m in table if m.source == pool or m.source.startswith(pool + "/")]


def own_namespace() -> str | None:
    """This process's mount namespace ("mnt:[4026531841]"); None without /proc (FreeBSD:
    one mount table for the whole host, jails included, which `mount -p` lists)."""
    try:
        return os.readlink("/proc/self/ns/mnt")
    except OSError:
        return None


def namespaces() -> list[tuple[str, int, list[Mount]]]:
    """(namespace, first PID seen in it, its mount table) for every mount namespace of
    the processes this PID namespace shows: one readlink per process, one mountinfo read
    per namespace. [] without /proc."""
    out, seen = [], set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in sorted(pids, key=int):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            with open(f"/proc/{pid}/mountinfo", "rb") as fh:
                text = fh.read().decode("utf-8", "surrogateescape")
        except OSError:          # exited meanwhile, or a kernel thread without a table
            continue
        seen.add(ns)
        out.append((ns, int(pid), parse_mountinfo(text)))
    return out
