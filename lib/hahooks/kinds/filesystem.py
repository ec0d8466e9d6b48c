"""`filesystem`: fsck and mount a device; unmount it safely.

acquire: wait for the device (bounded), fsck by policy (hahooks.fsck), mkdir the
mountpoint, `mount -t FSTYPE [-o OPTIONS] DEVICE MOUNTPOINT` (the same form on FreeBSD,
where FSTYPE defaults to ufs). Refused: mountpoint `/`, something already mounted below the
mountpoint (it would be hidden), another device on the mountpoint, the device mounted
elsewhere -- in this mount table or anywhere usage.elsewhere() finds it (another mount
namespace, a lazily detached mount still in use). A detached filesystem no process holds
is waited for first, up to device_timeout: most often a mount namespace that just ended,
which the kernel unmounts asynchronously.

shared = true (a device the peer can reach too: iSCSI, FC, a shared virtual disk): acquire
fences the peer ([node] fence) before it mounts and refuses when no fence succeeded — a
partitioned peer may still have it mounted, and a filesystem mounted twice is corrupted.
Replicated devices (hast, drbd, ggate) are exclusive by their own roles: leave it false.

release: `umount MOUNTPOINT` first; if busy, stop the processes holding exactly this mount
(TERM, `stop_grace`, KILL) and try again until the step's budget runs out; `umount -f` only
with `force_unmount = true`. Then the proof that nothing on the machine still uses the
filesystem (usage.elsewhere: every mount namespace, a lazily detached mount, stacked block
devices); if something does, the release stops here naming it and the PIDs (never
signalled: they may be a container's), so the layers below stay held.

status: held = the device (symlinks resolved) is mounted on the mountpoint; broken =
another device on the mountpoint, or the device mounted somewhere else (here, or where
usage.elsewhere finds it); else released. A re-run after the holder is gone converges.
"""
from __future__ import annotations

import logging
import os

from hahooks import evict, fsck, holderscan, mounts, safepath, schema, usage, waits
from hahooks.errors import Refused, WaitTimeout
from hahooks.kinds.base import Observation, Resource, State, broken, held, released
from hahooks.schema import Invalid

log = logging.getLogger("hahooks.kinds.filesystem")

_FSTYPE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")


class Filesystem(Resource):
    KIND = "filesystem"
    PARAMS = {
        "device": schema.Path(doc="block device to mount (/dev/hast/data, /dev/drbd0, ...)"),
        "mountpoint": schema.Path(doc="where to mount it; never /"),
        "fstype": schema.Str("", "filesystem type for fsck and mount (default: ufs on "
                             "FreeBSD, detected by mount on Linux)"),
        "options": schema.Str("", "mount options, comma-separated (noatime,nodev), without -o"),
        "fsck": schema.Str("auto", "fsck policy before mounting", choices=fsck.POLICIES),
        "device_timeout": schema.Duration("30s", "how long to wait for the device to appear "
                                          "(and for a detached mount of it nobody holds to "
                                          "finish unmounting)"),
        **evict.PARAMS,
        "force_unmount": schema.Bool(False, "as a last resort, `umount -f`"),
        "shared": schema.Bool(False, "the peer can reach this device too (iSCSI, FC, "
                              "shared disk): fence the peer ([node] fence) before mounting; "
                              "refuse without a successful fence"),
    }

    @classmethod
    def validate(cls, spec) -> None:
        p = spec.params
        if p["mountpoint"] == "/":
            raise Invalid("mountpoint: refusing to manage / (the root filesystem)")
        if p["device"] == p["mountpoint"]:
            raise Invalid("device and mountpoint are the same path")
        if p["options"].startswith("-") or any(c.isspace() for c in p["options"]):
            raise Invalid(f"options: give a comma-separated list like \"noatime,nodev\" "
                          f"(without -o or spaces), got {p['options']!r}")
        if not set(p["fstype"]) <= _FSTYPE_CHARS:
            raise Invalid(f"fstype: {p['fstype']!r} is not a filesystem type name")

    @classmethod
    def paths(cls, spec) -> list[tuple[str, str, dict]]:
        return [("mountpoint", spec.params["mountpoint"], {})]

    # -- helpers -----------------------------------------------------------
    @property
    def device(self) -> str:
        return self.p["device"]

    @property
    def mountpoint(self) -> str:
        return mounts.canonical(self.p["mountpoint"])

    @property
    def fstype(self) -> str:
        return self.p["fstype"] or ("ufs" if self.ctx.freebsd else "")

    def table(self) -> list[mounts.Mount]:
        return mounts.read(lambda argv: self.ctx.run(argv, readonly=True).stdout)

    # -- the shape ---------------------------------------------------------
    def status(self) -> Observation:
        return self._observe(self.table())

    def _observe(self, table: list[mounts.Mount]) -> Observation:
        dev, mp = self.device, self.mountpoint
        here = mounts.at(table, mp)
        others = [m.mountpoint for m in mounts.of_device(table, dev) if m.mountpoint != mp]
        if here is not None and mounts.same_device(here, dev):
            warnings = []
            if not os.path.exists(dev):
                warnings.append(f"its device node {dev} is gone")
            if others:
                warnings.append(f"{dev} is also mounted on {', '.join(others)}")
            return held(f"{dev} mounted on {mp}", "; ".join(warnings), fstype=here.fstype)
        if here is not None:
            return broken(f"another device ({here.source}) is mounted on {mp}")
        if others:
            return broken(f"{dev} is mounted on {others[0]}, not on {mp}")
        hidden = usage.elsewhere(usage.device_numbers(dev))
        if hidden:
            return broken(f"{dev} is in use where this mount table does not show it: "
                          + "; ".join(hidden), hidden=hidden)
        return released(f"{dev} not mounted on {mp}")

    def _unless(self, goal: State, verb: str, nested: str) -> list[mounts.Mount] | None:
        """The mount table, or None when already at `goal`. Refused: a broken state
        (someone else's mount, or ours in the wrong place: never touched) and mounts below
        the mountpoint (a mount would hide them; they keep an unmount busy)."""
        table = self.table()
        obs = self._observe(table)
        if obs.state is goal:
            return None
        if obs.state is State.BROKEN:
            if "hidden" in obs.details:
                raise Refused(f"not {verb}: {self.device} is in use where this mount "
                              "table does not show it: "
                              + "; ".join(self._named(obs.details["hidden"], set())))
            raise Refused(f"not {verb}: {obs.reason}")
        below = mounts.below(table, self.mountpoint)
        if below:
            raise Refused(f"not {verb} {self.mountpoint}: "
                          f"{', '.join(m.mountpoint for m in below)} {nested}")
        return table

    def acquire(self) -> None:
        dev, mp = self.device, self.mountpoint
        if mp == "/":
            raise Refused("refusing to mount over / (the root filesystem)")
        self._let_a_dying_mount_go()
        if self._unless(State.HELD, "mounting",
                        "is already mounted below it and would be hidden") is None:
            return
        target = safepath.verify(self.p["mountpoint"])     # before fsck: refuse early
        mp = target.resolved
        if self.p["shared"]:
            self._fence_the_peer()
        self.ctx.wait_for(lambda: os.path.exists(dev), f"device {dev} to appear",
                          timeout=self.p["device_timeout"], ceiling=waits.STAT_POLL)
        log.info("%s", fsck.check(self.ctx, dev, self.fstype, self.p["fsck"]))
        if not target.exists:
            self.ctx.effect(f"create mountpoint {mp}", lambda: os.makedirs(mp, 0o755,
                                                                            exist_ok=True))
        elif _not_empty(mp):
            log.warning("mountpoint %s is not empty: its files are hidden while %s is mounted",
                        mp, dev)
        # Again right before the mount: a verified path can change only by root's hand, but
        # a name just created in a sticky dir (/tmp) may have been planted first by another
        # user; then makedirs(exist_ok) went through and this walk finds the plant.
        mp = safepath.verify(self.p["mountpoint"]).resolved
        argv = ["mount", *(["-t", self.fstype] if self.fstype else []),
                *(["-o", self.p["options"]] if self.p["options"] else []), dev, mp]
        self.ctx.run(argv, readonly=False, what=f"mount {dev} on {mp}")

    def _let_a_dying_mount_go(self) -> None:
        """The device's filesystem still active with no mount in any table and no process
        holding it is most often a mount namespace whose last process just ended (a
        container stopped, a node of a one-kernel lab crashed): the kernel unmounts it
        asynchronously, ext4 after flushing its journal (over a second under I/O load).
        Wait for that, up to device_timeout, instead of refusing at once. A holder found,
        or the filesystem still there at the end, is refused by _unless as before."""
        if self.ctx.dry_run:
            return
        devs = usage.device_numbers(self.device)
        hidden = usage.elsewhere(devs)
        if not hidden or not all(usage.is_detached(f) for f in hidden):
            return
        if any(f.startswith(usage.HELD_BY) for f in self._named(hidden, devs)):
            return          # a process keeps it: it will not go by itself
        log.info("%s: a detached filesystem on it is still active and no process holds it; "
                 "waiting up to %gs for the kernel to finish unmounting it", self.device,
                 self.p["device_timeout"])
        try:
            self.ctx.wait_for(lambda: not usage.elsewhere(devs),
                              f"the kernel to finish unmounting the detached filesystem "
                              f"on {self.device}", timeout=self.p["device_timeout"])
        except WaitTimeout:
            pass

    def _fence_the_peer(self) -> None:
        why = f"{self.device} is shared: the peer may still have it mounted"
        if not self.ctx.engine.fence(why):
            raise Refused(f"not mounting {self.device}: it is shared (shared = true) and no "
                          "[node] fence command succeeded; a filesystem mounted on two nodes "
                          "is corrupted (configure [node] fence; Pacemaker: stonith)")

    def check(self, depth: int) -> None:
        """As Filesystem's monitor: depth 10 reads one block of the device bypassing the
        page cache (`dd iflag=direct`), depth 20 writes a status file under the mountpoint
        (`.hahooks_status/<node>`), syncs it and reads it back."""
        if depth >= 10:
            self.ctx.run(["dd", f"if={self.device}", "of=/dev/null", "bs=4096", "count=1",
                          "iflag=direct"], readonly=True, what="read check")
        if depth >= 20:
            status_dir = os.path.join(self.mountpoint, ".hahooks_status")
            path = os.path.join(status_dir, self.ctx.node.name)
            stamp = f"{self.ctx.node.name} {os.getpid()}\n"
            try:
                os.makedirs(status_dir, mode=0o700, exist_ok=True)
                # O_NOFOLLOW: root writes on a filesystem users may write to
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                with os.fdopen(os.open(path, flags, 0o600), "w") as out:
                    out.write(stamp)
                    out.flush()
                    os.fsync(out.fileno())
                with open(path) as fh:
                    back = fh.read()
            except OSError as exc:
                raise Refused(f"write check of {self.mountpoint} failed: {exc.strerror}") \
                    from None
            if back != stamp:
                raise Refused(f"write check of {self.mountpoint}: read back {back!r}")

    def join_group_release(self) -> None:
        """Register this mount with the group's shared scan before any member's umount:
        the first busy member's /proc pass then covers it too."""
        here = mounts.at(self.table(), self.mountpoint)
        if here is not None:
            self.ctx.engine.holder_scan.register(self.mountpoint, here.dev)

    def release(self) -> None:
        mp = self.mountpoint
        table = self._unless(State.RELEASED, "unmounting",
                             "is mounted below it (release that first)")
        if table is None:
            return
        mount_dev = mounts.at(table, mp).dev

        def umount(*flags):
            return lambda: self.ctx.run(["umount", *flags, mp], readonly=False, check=False)

        scan, used = self.ctx.engine.holder_scan, [0]
        if scan is not None:       # released with its parallel group: one /proc pass for all
            scan.register(mp, mount_dev)

        def holders() -> dict:
            if scan is not None:
                found, used[0] = scan.holders(mp, used[0])
                return found
            return holderscan.holders([mp], devices={mount_dev} if mount_dev is not None else None)

        evict.release(self.ctx, what=f"{self.device} on {mp}", attempt=umount(),
                      holders=holders, grace=self.p["stop_grace"],
                      kill=self.p["kill_holders"],
                      force=umount("-f") if self.p["force_unmount"] else None,
                      gone=lambda: mounts.at(self.table(), mp) is None)
        self._prove_unused(mount_dev)

    def _prove_unused(self, mount_dev: int | None) -> None:
        """Unmounted here; the layer below may go only if nothing on the machine still
        uses the filesystem (usage.elsewhere). Its users are reported, never signalled:
        they may belong to a container or another unit this hook knows nothing of."""
        if self.ctx.dry_run:
            return
        devs = usage.device_numbers(self.device) | ({mount_dev} if mount_dev else set())
        hidden = usage.elsewhere(devs)
        if hidden:
            raise Refused(f"{self.device} was unmounted from {self.mountpoint} but is still "
                          "in use where this mount table does not show it: "
                          + "; ".join(self._named(hidden, devs)))

    def _named(self, hidden: list[str], devs: set[int]) -> list[str]:
        """`hidden` with the processes holding a lazily detached filesystem, from one
        /proc pass (the parallel group's shared one when there is one)."""
        if not usage.needs_names(hidden):
            return hidden
        devs = devs or usage.device_numbers(self.device)
        key = f"device {self.device}"
        scan = self.ctx.engine.holder_scan
        if scan is not None:
            scan.register_devices(key, devs)
            found, _ = scan.holders(key, 0, fresh=True)
        else:
            found = holderscan.holders_by_mount({}, {key: devs})[key]
        return usage.name_holders(hidden, found)


def _not_empty(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return any(e.name != "lost+found" for e in it)
    except OSError:
        return False


RESOURCE = Filesystem
