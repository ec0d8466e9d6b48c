"""Helpers shared by the replication kinds (hast, md, ggate-*, gmirror, drbd): where a
device node lives, and whether one of this node's devices is still in use (mounted, a vdev
of an imported pool) before a release pulls it away (docs/reference/hast.md §3: `hastctl role
secondary` destroys /dev/hast/X even when it is mounted)."""
from __future__ import annotations

import glob
import logging
import os

from hahooks import mounts as mount_table, parsers, procs, usage
from hahooks.errors import HahooksError, Refused, WaitTimeout

log = logging.getLogger("hahooks.kinds.replication")

def dev_path(ctx, *parts: str) -> str:
    """<[node] dev_dir>/parts: /dev/hast/r0, /dev/ggate0, /dev/mirror/gm0, /dev/md0."""
    return os.path.join(ctx.node.dev_dir, *parts)


def mounts(ctx) -> list:
    """The mount table of this process's namespace (hahooks.mounts: /proc/self/mountinfo
    where the kernel has it, else FreeBSD's `mount -p`)."""
    return mount_table.read(lambda argv: ctx.run(argv, readonly=True).stdout)


def _pool_vdevs(ctx) -> dict[str, list[str]]:
    """Imported pools and their vdev names; {} when there is no ZFS on this node."""
    if not ctx.runner.which("zpool"):
        return {}
    for argv in (["zpool", "status", "-P"], ["zpool", "status"]):
        try:
            r = ctx.run(argv, readonly=True, check=False)
        except HahooksError as exc:      # a hung zpool must not hide a busy device
            raise Refused(f"cannot tell whether a pool uses the device: {exc.one_line()}")
        if r.exit_code == 0:
            return parsers.parse_zpool_status(r.stdout)
        if "no pools available" in r.stdout + r.stderr or \
                "failed to initialize ZFS library" in r.stderr:
            return {}                    # no pool, or no ZFS daemon (zfs-fuse): nothing imported
    raise Refused(f"cannot tell whether a pool uses the device: {' '.join(argv)} exited "
                  f"{r.exit_code}: {(r.stderr or r.stdout).strip()[-200:]}")


def _vdev_is(name: str, device: str) -> bool:
    return name == device or "/dev/" + name == device


def users_of(ctx, devices: list[str]) -> list[str]:
    """Why any of `devices` is still in use: "<dev> is mounted at <dir>", "<dev> is a vdev
    of imported pool <p>", "<dev> is attached to /dev/loopN"."""
    reasons = []
    table = mounts(ctx)
    for m in table:
        for dev in devices:
            if mount_table.same_device(m, dev):
                reasons.append(f"{dev} is mounted at {m.mountpoint}")
    for pool, names in _pool_vdevs(ctx).items():
        for dev in devices:
            if any(_vdev_is(n, dev) for n in names):
                reasons.append(f"{dev} is a vdev of imported pool {pool}")
    return reasons + _loop_users(devices, {m.source for m in table})


LOOP_ATTACHED = " is attached to /dev/loop"
LOOP_SETTLE = 5.0   # a loop device made by mount(8) detaches itself shortly after umount


def _loop_users(devices: list[str], mounted: set[str]) -> list[str]:
    """Linux only: loop devices set up on one of `devices` (by inode) and not mounted."""
    idents = {}
    for dev in devices:
        try:
            st = os.stat(dev)
        except OSError:
            continue
        idents[(st.st_dev, st.st_ino)] = dev
    found = []
    for entry in glob.glob("/sys/block/loop*/loop") if idents else ():
        loop = "/dev/" + entry.split("/")[3]
        if loop not in mounted and mount_table.loop_backing(loop) in idents:
            found.append(f"{idents[mount_table.loop_backing(loop)]}{LOOP_ATTACHED}"
                         f"{loop.removeprefix('/dev/loop')}")
    return found


def refuse_if_used(ctx, devices: list[str], action: str) -> None:
    """Refuse `action` while a layer above still uses one of `devices` (the engine releases
    top-down; this double-check protects against a stack edited or a manual mount, here or
    in another mount namespace: usage.elsewhere). A loop device left by an unmount gets
    LOOP_SETTLE seconds to detach itself."""
    if ctx.dry_run:
        return
    # uses this mount table cannot show (another mount namespace, a lazily detached mount):
    # no loop device settles them, and the refusal names the namespace and its process
    hidden = [f"{dev} is {use}" if use.startswith("mounted") else f"{dev}: {use}"
              for dev in devices for use in usage.elsewhere(usage.device_numbers(dev))]
    if hidden:
        raise Refused(f"refusing to {action}: " + "; ".join(hidden) +
                      " (release the layers above first)")
    reasons = users_of(ctx, devices)
    if reasons and all(LOOP_ATTACHED in r for r in reasons):
        try:
            ctx.wait_for(lambda: not users_of(ctx, devices), "loop devices to detach",
                         timeout=LOOP_SETTLE)
            return
        except WaitTimeout:
            reasons = users_of(ctx, devices)
    if reasons:
        raise Refused(f"refusing to {action}: " + "; ".join(reasons) +
                      " (release the layers above first)")


def peer_known_down(ctx, policy: str, why: str) -> bool:
    """A peer this node cannot see may still be writing (a cut link is not a dead node).
    True when going on is allowed: the operator's explicit policy "assume-down", or policy
    "fence" and the [node] fence command succeeded (once per transition, engine.fence)."""
    if policy == "assume-down":
        log.warning("%s; unknown_peer = \"assume-down\": going on without fencing", why,
                    extra={"event": "forced"})
        return True
    return policy == "fence" and ctx.engine.fence(why)


def find_daemons(program: str, *args: str) -> list:
    """Running processes of `program` (the basename of argv[0], or of a script an interpreter
    runs: `python3 -S /path/ggated ...`) whose argument list contains every one of `args`."""
    psutil = procs._psutil()
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if not argv:
            continue
        names = {os.path.basename(a) for a in argv[:3]}
        if program in names and all(a in argv for a in args):
            found.append(proc)
    return found


def tail(result) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.exit_code}"
