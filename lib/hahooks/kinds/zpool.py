"""`zpool`: import and export a ZFS pool without ever forcing blindly.

acquire: nothing to do if imported. Else `zpool import -o cachefile=none [-d DIR]... [-N]
POOL` (cachefile=none: a secondary never auto-imports the pool at boot). `-f` only
  - at once, when a replication layer below with exclusive access was acquired (HAST
    primary, DRBD Primary, ggate attach), or with `force_import = "always"`;
  - after a plain import was refused because the pool was last used by another system,
    only if `ctx.engine.fence()` succeeded ([node] fence) and force_import is not "never".
Otherwise zpool's refusal is reported, quoted, and nothing is forced (real ZFS accepts a
forced import while the peer still has the pool imported, then corrupts it,
docs/reference/zfs.md §4). Then wait (bounded) until the pool's health is ONLINE or DEGRADED.

release: refused while a dataset is mounted in another mount namespace (usage.hidden_mounts:
the export unmounts only this namespace's), or while a process holds a file on a dataset
that was lazily detached (`umount -l`; usage.detached), naming it; such a holder is never
signalled. `zpool export POOL` (never -f first); if a dataset is busy, stop the processes
holding the pool's mounted datasets and retry within the step's budget; `export -f` only
with `force_export = true`.

A lazily detached dataset is in no mount table and zfs-fuse calls it not mounted, yet its
FUSE superblock lives on while a file is open, with the device number it had when mounted;
nothing else on the machine ties that number to the pool. So acquire and release note the
device numbers of the pool's mounted datasets in the state dir (zpool-POOL.json, kept while
the pool is imported, removed after the export), and release looks for processes on the
noted numbers no mount table shows. The export is not even tried while such a holder
lives: measured on zfs-fuse 0.7.0, an export then answers "pool is busy", and in 3 of 4 runs
went on answering it after the holder exited, until zfs-fuse was restarted
(docs/reference/zfs.md §4).

status: `zpool list -H -o name,health`: ONLINE = held, DEGRADED = held with a warning,
FAULTED/UNAVAIL/SUSPENDED/... = broken, not listed = released.
"""
from __future__ import annotations

import logging
import os
import re

from hahooks import evict, holderscan, mounts, schema, usage
from hahooks.errors import CommandFailed, Refused, WaitTimeout
from hahooks.kinds.base import Observation, Resource, State, broken, held, released
from hahooks.state import StateDir

log = logging.getLogger("hahooks.kinds.zpool")

GOOD = ("ONLINE", "DEGRADED")
SETTLE_TIMEOUT = 10.0     # zfs-fuse's own unmount of a detached dataset: well under 1 s
# legacy ZFS / zfs-fuse: "pool may be in use from other system, it was last accessed by ...";
# OpenZFS: "pool was previously in use from another system."
OTHER_SYSTEM = re.compile(r"in use from (?:an)?other system|last accessed by another system")


class Zpool(Resource):
    KIND = "zpool"
    PARAMS = {
        "pool": schema.Name(doc="pool name"),
        "import_dirs": schema.PathList([], "directories searched for the pool's devices "
                                       "(zpool import -d DIR, once each)"),
        "no_mount": schema.Bool(False, "import without mounting datasets (-N; not in zfs-fuse)"),
        "force_import": schema.Str("auto", "when `zpool import -f` may be used",
                                   choices=("never", "auto", "always")),
        "force_export": schema.Bool(False, "as a last resort, `zpool export -f`"),
        "health_timeout": schema.Duration("30s", "how long an import may take to show "
                                          "ONLINE or DEGRADED"),
        **evict.PARAMS,
    }

    @property
    def pool(self) -> str:
        return self.p["pool"]

    def _health(self) -> str | None:
        """The pool's health, None if not imported; raises if zpool cannot answer."""
        r = self.ctx.query(["zpool", "list", "-H", "-o", "name,health"], what="list pools")
        for line in r.stdout.splitlines():
            name, _, health = line.partition("\t")
            if name == self.pool:
                return health.strip()
        return None

    def status(self) -> Observation:
        health = self._health()
        if health is None:
            return released(f"pool {self.pool} not imported")
        if health == "ONLINE":
            return held(f"pool {self.pool} ONLINE", health=health)
        if health == "DEGRADED":
            return held(f"pool {self.pool} imported", f"pool is {health}", health=health)
        return broken(f"pool {self.pool} is imported but {health}", health=health)

    def _mounted(self) -> list[mounts.Mount]:
        return mounts.of_pool(mounts.read(lambda argv: self.ctx.run(
            argv, readonly=True).stdout), self.pool)

    @property
    def _note(self) -> str:
        return f"zpool-{self.pool}.json"

    def _note_datasets(self) -> set[int]:
        """Note the device numbers of the pool's datasets mounted here; returns those
        noted since its import that this mount table no longer shows."""
        state = StateDir(self.ctx.node.state_dir)
        noted = {int(d) for d in (state.note(self._note) or {}).get("devices", [])
                 if isinstance(d, int)}
        here = {m.dev for m in self._mounted() if m.dev is not None}
        # `hahooks import-pool` runs without preparing a state dir: nothing is noted there
        if here - noted and not self.ctx.dry_run and os.path.isdir(state.path):
            state.set_note(self._note, {"pool": self.pool, "devices": sorted(noted | here)})
        return noted - here

    def _forget_devices(self) -> None:
        if not self.ctx.dry_run and os.path.isdir(self.ctx.node.state_dir):
            StateDir(self.ctx.node.state_dir).set_note(self._note, None)

    def _settle(self) -> None:
        """A detached dataset's last holder is gone: zfs-fuse unmounts it on its own once
        the FUSE connection ends, and an export racing that may stay busy for good.
        Measured on zfs-fuse 0.7.0: in 3 of 8 runs that unmount never ended (the
        connection stays open, the pool busy, `zpool export -f` too) until zfs-fuse was
        restarted; then say so rather than try (docs/reference/zfs.md §4)."""
        try:
            self.ctx.wait_for(_fuse_settled, "zfs-fuse to finish unmounting the detached "
                              f"dataset(s) of pool {self.pool}", timeout=SETTLE_TIMEOUT)
        except WaitTimeout:
            raise Refused(
                f"not exporting pool {self.pool}: a dataset of it was lazily unmounted "
                "(`umount -l`); its holders are gone, but zfs-fuse has not finished "
                f"unmounting it after {SETTLE_TIMEOUT:g}s (a zfs-fuse defect: it then never "
                "does, and the pool stays busy); restart zfs-fuse (TERM does not end it "
                "then: KILL), then run this again") \
                from None

    def _import_argv(self, forced: bool) -> list[str]:
        return ["zpool", "import", "-o", "cachefile=none",
                *[a for d in self.p["import_dirs"] for a in ("-d", d)],
                *(["-N"] if self.p["no_mount"] else []), *(["-f"] if forced else []), self.pool]

    def acquire(self) -> None:
        obs = self.status()
        if obs.state is State.HELD:
            self._note_datasets()
            return
        if obs.state is State.BROKEN:
            raise Refused(f"not importing: {obs.reason}")
        self._forget_devices()      # numbers from an earlier import say nothing now
        policy = self.p["force_import"]
        forced = policy == "always" or (policy == "auto" and self.exclusive_below())
        if forced:
            log.info("importing %s with -f: %s", self.pool, "force_import = \"always\""
                     if policy == "always" else "a layer below guarantees exclusive access")
        r = self._import(forced)
        if not r.ok and not forced and OTHER_SYSTEM.search(r.stderr + r.stdout):
            said = " ".join((r.stderr or r.stdout).split())
            if policy == "auto" and self.ctx.engine.fence(
                    f"pool {self.pool} was last used by another system"):
                log.warning("%s; the peer was fenced: importing with -f", said)
                r = self._import(True)
            else:
                raise Refused(
                    f"not forcing the import of {self.pool}: zpool said: {said} -- a forced "
                    "import is allowed only when a replication layer below guarantees "
                    "exclusive access or after [node] fence succeeded "
                    f"({'fence failed or not configured' if policy == 'auto' else 'force_import = never'})")
        if not r.ok:
            imported = self._health() is not None
            raise CommandFailed(r, f"import {self.pool}" + (
                " (the pool was imported but not every dataset was mounted)"
                if imported else ""))
        self.ctx.wait_for(lambda: self.status().state is State.HELD,
                          f"pool {self.pool} to be ONLINE or DEGRADED",
                          timeout=self.p["health_timeout"])
        self._note_datasets()

    def _import(self, forced: bool):
        return self.ctx.run(self._import_argv(forced), readonly=False, check=False,
                            what=f"import {self.pool}")

    def release(self) -> None:
        if self._health() is None:
            self._forget_devices()
            return
        hidden = [] if self.ctx.dry_run else usage.hidden_mounts(
            set(), match=lambda m: mounts.of_pool([m], self.pool) != [])
        if hidden:
            # an export unmounts the datasets in this namespace only; a copy elsewhere (an
            # `unshare -m` shell, a container) would keep using a pool the peer imports next
            raise Refused(f"not exporting pool {self.pool}: its datasets are in use where "
                          "this mount table does not show them: " + "; ".join(hidden))
        # the common case, every noted dataset mounted here, costs no look at the others
        gone = set() if self.ctx.dry_run else usage.unlisted(self._note_datasets())
        held = usage.detached(gone)
        if held:
            raise Refused(f"not exporting pool {self.pool}: a dataset of it was lazily "
                          "unmounted (`umount -l`) and is still in use where no mount table "
                          "shows it, held by " + "; ".join(held) + " -- stop that process "
                          "(an export tried meanwhile likely leaves zfs-fuse busy for good)")
        if gone:
            self._settle()

        def export(*flags):
            return lambda: self.ctx.run(["zpool", "export", *flags, self.pool], readonly=False,
                                        check=False)

        def holders() -> dict:
            datasets = self._mounted()
            if not datasets:
                return {}
            devs = {m.dev for m in datasets if m.dev is not None}
            return holderscan.holders([m.mountpoint for m in datasets], devices=devs or None)

        evict.release(self.ctx, what=f"pool {self.pool}", attempt=export(), holders=holders,
                      grace=self.p["stop_grace"], kill=self.p["kill_holders"],
                      force=export("-f") if self.p["force_export"] else None,
                      gone=lambda: self._health() is None)
        self._forget_devices()


def _fuse_settled() -> bool:
    """zfs-fuse keeps one /dev/fuse descriptor per mounted dataset and closes it only once
    its own unmount of the dataset is done (zfs-fuse src/zfs-fuse/fuse_listener.c
    destroy_fs(): fuse_session_destroy(), whose destroy op zfsfuse_destroy() runs
    do_umount(), then close()). Settled when the daemons hold no more of them than there
    are zfs-fuse superblocks in the mount tables (one per device number, however many
    namespaces show it). True where no zfs-fuse runs (kernel ZFS unmounts synchronously)."""
    connections, daemons = 0, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) != "zfs-fuse":
                continue
            daemons += 1
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                connections += os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/fuse"
            except OSError:
                pass
    if not daemons:
        return True
    mounted = {m.dev for _, _, table in mounts.namespaces() for m in table
               if m.fstype == "fuse.zfs"}
    return connections <= len(mounted)


RESOURCE = Zpool
