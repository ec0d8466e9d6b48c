"""Does anything on this machine still use a device where our own mount table cannot show
it? The proof a filesystem release gives before the layer below it goes, and the check
behind acquire's "not mounted elsewhere" (issue 17). A mount namespace starts with a copy
of every mount (Linux fs/namespace.c copy_mnt_ns()); a private copy (`unshare -m`, whose
default is --propagation private; a container) lives as long as the namespace
(docs/reference/lab.md) and an unmount here does not reach it. A slave copy (systemd's
PrivateMounts=, PrivateTmp=) receives our unmount and goes with it.

Linux: a mount is per mount namespace, so /proc/self/mountinfo is not the machine. Three
places show what it hides, all matched by device number (major:minor), never by path:
  - every mount namespace's table (/proc/PID/mountinfo, one read per namespace): a copy
    made by `unshare -m` or a container, or a bind mount of a subdirectory at another path
    (a copy that was remounted private, or bound elsewhere, inside a systemd unit too);
  - /sys/fs/<type>/<device name>: the filesystem driver's entry for a mounted superblock
    (ext4, xfs, f2fs: fs/ext4/sysfs.c ext4_register_sysfs()). It outlives every mount
    when a lazily detached mount (`umount -l`) still has a file open, and is the only
    trace of one; the processes holding it are then found by the st_dev of their open
    files, maps, cwd and root (holderscan.holders_by_mount's `devices`);
  - /sys/dev/block/MAJ:MIN/holders: a device-mapper, md or bcache device stacked on it.
A simulated device or an image is a regular file: its device numbers are those of the loop
devices set up on it (by inode, and named by this path: two simulated nodes share one
image inode, each through its own device path).

FreeBSD has no mount namespaces (jails' mounts are in the host's `mount -p`) and no lazy
unmount (`umount -f` forces), so its own table is the whole proof there; what a process
holds is what fstat(1) / `fuser -c` report, which psutil reads from the same kinfo_file
sysctl (holderscan.holders; docs/reference/python-deps.md §2; usr.bin/fstat/fstat.c
procstat_getfiles()). Which one applies follows the running kernel, as mounts.read does,
not the configured platform (platforms.py)."""
from __future__ import annotations

import glob
import os
import stat

from hahooks import holderscan, mounts, procs


def device_numbers(device: str) -> set[int]:
    """The block device numbers behind `device`: its st_rdev, or for a regular file the
    loop devices set up on it. Empty when it does not exist."""
    try:
        st = os.stat(device)
    except OSError:
        return set()
    if stat.S_ISBLK(st.st_mode):
        return {st.st_rdev}
    if not stat.S_ISREG(st.st_mode):
        return set()
    real, found = os.path.realpath(device), set()
    for entry in glob.glob("/sys/block/loop*/loop/backing_file"):
        name = entry.split("/")[3]
        try:
            with open(entry) as fh:
                backing = fh.read().strip()
            with open(f"/sys/block/{name}/dev") as fh:
                major, _, minor = fh.read().strip().partition(":")
        except OSError:
            continue
        if backing.removesuffix(" (deleted)") != real:
            continue
        if mounts.loop_backing(f"/dev/{name}") in (None, (st.st_dev, st.st_ino)):
            found.add(os.makedev(int(major), int(minor)))
    return found


def _kernel_name(dev: int) -> str | None:
    path = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    return os.path.basename(os.path.realpath(path)) if os.path.exists(path) else None


def _title(pid: int) -> str:
    return " ".join(procs.title_of_pid(pid).split())[:60]


def hidden_mounts(devs: set[int], match=None) -> list[str]:
    """Mounts of `devs` (or, with match(Mount) -> bool, of whatever it accepts) in mount
    namespaces other than this process's own, one phrase each."""
    return _mounts(devs, match)[1]


def _mounts(devs: set[int], match=None) -> tuple[bool, list[str]]:
    """(mounted in this namespace, phrases for the mounts in the others)."""
    if not devs and match is None:
        return False, []
    own, here, found = mounts.own_namespace(), False, []
    for ns, pid, table in mounts.namespaces() if own else ():
        hits = [m for m in table if (m.dev in devs if match is None else match(m))]
        if ns == own:
            here = here or bool(hits)
            continue
        found += [f"mounted on {m.mountpoint} in mount namespace {ns} "
                  f"(pid {pid}: {_title(pid)})" for m in hits]
    return here, found


def _stacked(devs: set[int]) -> tuple[list[str], list[str]]:
    """(device-mapper/md holders, names of filesystems still active) on `devs`."""
    held, active = [], []
    fs_types = sorted(os.listdir("/sys/fs")) if os.path.isdir("/sys/fs") else []
    for dev in sorted(devs):
        name = _kernel_name(dev)
        if name is None:
            continue
        try:
            holders = sorted(os.listdir(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
                                        "/holders"))
        except OSError:
            holders = []
        held += [f"/dev/{name} is held by /dev/{h}" for h in holders]
        active += [f"an {t} filesystem on /dev/{name}" for t in fs_types
                   if os.path.isdir(f"/sys/fs/{t}/{name}")]
    return held, active


def elsewhere(devs: set[int]) -> list[str]:
    """Why a filesystem on `devs`, not mounted in this namespace, is still in use: its
    mounts in other namespaces, block devices stacked on it, and a filesystem still active
    with no mount anywhere (lazily detached). [] when nothing is left. Cheap (no open-file
    scan): `status` asks it."""
    if not devs:
        return []
    here, found = _mounts(devs)
    held, active = _stacked(devs)
    if active and not found and not here:
        found += [f"{a} is still active with no mount in any mount namespace (lazily "
                  "unmounted with `umount -l` while in use)" for a in active]
    return found + held


def name_holders(found: list[str], holders: dict) -> list[str]:
    """`found` (from elsewhere()) with the processes holding files on the filesystem, from
    a holders_by_mount() pass with the same device numbers ({Process: reason})."""
    if not holders:
        return found + (["no process found holding it (one in another PID namespace?)"]
                        if needs_names(found) else [])
    return found + [HELD_BY + ", ".join(f"pid {p.pid} ({_title(p.pid)}: {why})"
                                        for p, why in holders.items())]


HELD_BY = "held by "


def is_detached(entry: str) -> bool:
    """Whether an elsewhere() entry is a filesystem still active with no mount anywhere."""
    return "still active" in entry


def needs_names(found: list[str]) -> bool:
    """Only a lazily detached filesystem is known by its holders alone."""
    return any(is_detached(f) for f in found)


def unlisted(devs: set[int]) -> set[int]:
    """The numbers among `devs` that no mount namespace's table shows: filesystems gone, or
    lazily detached (`umount -l`). A number a table shows again was reused by a live mount.
    FreeBSD has no lazy unmount: empty."""
    if not devs or mounts.own_namespace() is None:
        return set()
    return devs - {m.dev for _, _, table in mounts.namespaces() for m in table}


def detached(gone: set[int]) -> list[str]:
    """Processes still using a filesystem among `gone` (from unlisted()): a lazily detached
    one kept alive by what they hold (open or mapped files, cwd, root; found by st_dev,
    wherever the path went). One phrase per process with its mount namespace; [] when
    none. The caller knows the numbers from when they were mounted: a detached filesystem
    with no sysfs entry (FUSE: zfs-fuse's datasets) leaves no other trace of them."""
    if not gone:
        return []
    found = holderscan.holders_by_mount({}, {"detached": gone})["detached"]
    return [f"pid {p.pid} ({_title(p.pid)}: {why}; mount namespace {_mnt_ns(p.pid)})"
            for p, why in found.items()]


def _mnt_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return "?"
