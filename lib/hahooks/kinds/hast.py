"""`hast`: one or more HAST resources (or `all`) switched primary/secondary with hastctl.

held     = every resource is primary and its <dev_dir>/hast/NAME exists.
released = every resource is secondary.
broken   = hastd unreachable, unknown resource, a mix of roles, role `init` (hastd starts
           every resource in init: nothing replicates until a role is set), or primary
           without its device (the primary worker died and hastd reverts to init).

acquire (docs/reference/hast.md; seed ucarp_up.sh):
1. wait (bounded) for every `hastd: NAME (secondary)` worker to exit — while it runs the peer
   may still act as primary; if it does not exit, go on only after the [node] fence command
   succeeded. Its exit proves nothing by itself: a crashed or cut-off primary ends it too,
   after its receive timeout (sbin/hastd/secondary.c, 2 * HAST_KEEPALIVE).
2. one `hastctl role primary r1 r2 ...`; confirm the roles with `hastctl list`; wait
   (bounded) for the devices. The device exists at once, but its I/O stalls while the new
   primary waits for its peer (sbin/hastd/primary.c hastd_primary(): init_ggate() before
   init_remote()), and after `timeout` (20 s) the worker starts "anyway" — beside a peer
   that may still be primary.
3. so no layer above may touch the device until every resource is `complete` (peer
   connected as secondary) within `complete_wait`, or the peer is known down: fenced in step
   1, or now by `unknown_peer` ("fence": [node] fence succeeded; "assume-down": the
   operator's word; "refuse"). Not complete: roll back first (`role secondary`, before hastd's
   own timeout would start the worker anyway); if our secondary worker comes back the peer
   is a live connected primary (a CARP race lost): fail without fencing it; else ask; if
   the peer is known down, promote again (the fence ran before that promotion), else fail.
Never `hastctl create` (it discards metadata).

release: refuse while one of the devices is mounted or a vdev of an imported pool
(`role secondary` destroys the device under a mount), then `hastctl role secondary ...`.
"""
from __future__ import annotations

import logging
import os

from hahooks import parsers, procs, schema, waits
from hahooks.errors import CommandFailed, Refused, WaitTimeout
from hahooks.kinds import _replication as rep
from hahooks.kinds.base import Observation, Resource, broken, held, released
from hahooks.schema import Invalid

log = logging.getLogger("hahooks.kinds.hast")

# hastctl exit codes that mean "no answer about the resources" (docs/reference/hast.md §1)
EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE, EX_OSERR = 64, 69, 70, 71
# after a rollback, how long a connected primary peer gets to show up again as our secondary
# worker before the peer counts as unreachable (a best effort: hastd's guard thread retries
# a lost connection every HAST_KEEPALIVE, 10 s; the fence decides the rest)
PEER_SEEN_WAIT = 2.0


class Hast(Resource):
    KIND = "hast"
    EXCLUSIVE = True     # acquire ends complete, or with the peer known down: we alone write
    PROMOTABLE = True
    PARAMS = {
        "resources": schema.Names(doc='HAST resource names from hast.conf, or "all" '
                                  '(alone)'),
        "secondary_wait": schema.Duration("30s", "how long the peer may take to leave primary "
                                          "(its `hastd: NAME (secondary)` worker here exits)"),
        "device_wait": schema.Duration("10s", "how long <dev_dir>/hast/NAME may take to appear "
                                       "after `hastctl role primary` (the primary worker "
                                       "makes it)"),
        # below hast.conf's `timeout` (20 s): a new primary whose peer is still primary, or
        # unreachable, starts "anyway" when that runs out; the rollback must come first
        "complete_wait": schema.Duration("5s", "how long every resource may take to be "
                                         "`complete` (peer connected as secondary) after "
                                         "`hastctl role primary`; keep it under hast.conf's "
                                         "timeout (20 s): when it runs out hahooks rolls "
                                         "back, and that must happen before hastd starts "
                                         "the resource \"anyway\""),
        "unknown_peer": schema.Str("fence", "not complete in time (the peer is down, cut off or "
                                   "still primary): \"fence\" = go on only after [node] fence "
                                   "succeeded; \"assume-down\" = go on degraded (the operator "
                                   "knows the peer is off); \"refuse\" = roll back and fail",
                                   choices=("fence", "assume-down", "refuse")),
        "hast_conf": schema.Path(None, "hast.conf passed as `-c` (default: hastctl's own, "
                                 "/etc/hast.conf)"),
    }

    @classmethod
    def validate(cls, spec) -> None:
        names = spec.params["resources"]
        if "all" in names and len(names) > 1:
            raise Invalid('resources: "all" stands alone (it already means every resource)')

    # -- helpers -----------------------------------------------------------------------
    @property
    def all(self) -> bool:
        return self.p["resources"] == ["all"]

    def hastctl(self, verb: str, *args: str) -> list[str]:
        opts = ["-c", self.p["hast_conf"]] if self.p["hast_conf"] else []
        return ["hastctl", verb, *opts, *args]

    def targets(self) -> list[str]:
        return ["all"] if self.all else list(self.p["resources"])

    def device(self, name: str) -> str:
        return rep.dev_path(self.ctx, "hast", name)

    def observe(self) -> dict[str, parsers.HastResource]:
        """Roles of our resources from `hastctl list` (`status` where `list` is missing).
        ctx.query: the engine's status() before acquire/release, acquire/release's own
        look and the confirming status() after share one answer until a role changes."""
        r = self.ctx.query(self.hastctl("list", *self.targets()), check=False)
        if r.exit_code == EX_USAGE:   # FreeBSD 9.0: no `list`, `status` is the verbose form
            r = self.ctx.query(self.hastctl("status", *self.targets()), check=False)
        if r.exit_code in (EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE, EX_OSERR):
            raise CommandFailed(r, "hastd")
        found = parsers.parse_hastctl(r.stdout)
        if self.all:
            if not found:
                raise CommandFailed(r, "hastctl lists no resource")
            return found
        missing = [n for n in self.p["resources"] if n not in found]
        if missing:
            raise CommandFailed(r, f"no answer for {' '.join(missing)}")
        return {n: found[n] for n in self.p["resources"]}

    # -- the shape ---------------------------------------------------------------------
    def status(self) -> Observation:
        try:
            found = self.observe()
        except CommandFailed as exc:
            return broken(exc.one_line())
        errors = [f"{n}: error {h.error} from hastd" for n, h in found.items() if h.error]
        if errors:
            return broken("; ".join(errors) + " (unknown resource?)")
        roles = {n: h.role for n, h in found.items()}
        details = {n: {"role": h.role, "status": h.status, "dirty": h.dirty}
                   for n, h in found.items()}
        if all(role == "primary" for role in roles.values()):
            missing = [self.device(n) for n in found if not os.path.exists(self.device(n))]
            if missing:
                return broken("primary but " + " ".join(missing) + " missing", **details)
            return self._held(found, details)
        if all(role == "secondary" for role in roles.values()):
            return released("secondary: " + " ".join(found), **details)
        init = [n for n, role in roles.items() if role == "init"]
        if init and len(init) == len(roles):
            return broken("role init: " + " ".join(init) + " (hastd starts resources in init; "
                          "nothing replicates until master or slave sets a role)", **details)
        return broken("mixed roles: " + " ".join(f"{n}={r}" for n, r in roles.items()),
                      **details)

    def _held(self, found, details) -> Observation:
        parts, degraded = [], []
        for n, h in found.items():
            dirty = f", dirty {parsers.human_bytes(h.dirty)}" if h.dirty else ""
            parts.append(f"{n} ({h.status or 'no worker'}{dirty})")
            if h.status != "complete":
                degraded.append(n)
        warning = ("degraded (peer not connected, writes are not replicated): " +
                   " ".join(degraded)) if degraded else ""
        return held("primary: " + ", ".join(parts), warning, **details)

    def acquire(self) -> None:
        found = self.observe()
        todo = [n for n, h in found.items() if h.role != "primary"]
        devices = [self.device(n) for n in found]
        if not todo:
            self._wait_devices(devices)
            return
        fenced = self._wait_for_peer_to_leave_primary(todo)
        self._promote(todo, devices)
        if fenced or self.ctx.dry_run or self._complete_within(todo):
            return
        why = self._not_complete(todo)
        log.warning("%s; rolling back before hastd starts the resource anyway", why,
                    extra={"event": "peer", "resource": self.name})
        self._demote(todo)
        if self._peer_primary_seen(todo):
            raise Refused(f"{why}; rolled back to secondary: the peer is primary and connected "
                          "(its worker here came back after the rollback), so it is alive: "
                          "not fencing it")
        if not rep.peer_known_down(self.ctx, self.p["unknown_peer"], why):
            raise Refused(f"{why}; rolled back to secondary: the peer may still be primary "
                          f"(unknown_peer = \"{self.p['unknown_peer']}\"; configure [node] "
                          "fence, or set unknown_peer = \"assume-down\" if you know it is off)")
        self._promote(todo, devices)

    def _promote(self, todo: list[str], devices: list[str]) -> None:
        self.ctx.run(self.hastctl("role", "primary", *(["all"] if self.all else todo)),
                     readonly=False, what=f"make {' '.join(todo)} primary")
        if not self.ctx.dry_run:
            # hastd has set the role when hastctl returns; the device comes later, from the
            # primary worker. Asking now (the role change dropped the answer from before
            # it) overlaps the question with the worker's start.
            roles = {n: h.role for n, h in self.observe().items()}
            if any(role != "primary" for role in roles.values()):
                raise Refused("after `hastctl role primary`: " +
                              " ".join(f"{n}={r}" for n, r in roles.items()))
        self._wait_devices(devices)

    def _demote(self, todo: list[str]) -> None:
        self.ctx.run(self.hastctl("role", "secondary", *(["all"] if self.all else todo)),
                     readonly=False, what=f"roll {' '.join(todo)} back to secondary")

    def _wait_devices(self, devices: list[str]) -> None:
        try:
            self.ctx.wait_for(lambda: all(os.path.exists(d) for d in devices),
                              "devices to appear: " + " ".join(devices),
                              timeout=self.p["device_wait"], ceiling=waits.STAT_POLL)
        except WaitTimeout as exc:
            raise WaitTimeout(self._why_no_device(devices), self.p["device_wait"]) from exc

    def _complete_within(self, todo: list[str]) -> bool:
        """Every resource `complete` (the peer connected as secondary) within complete_wait:
        only then is the peer known not to be primary."""
        def complete() -> bool:
            self.ctx.forget()
            found = self.observe()
            return all(found[n].status == "complete" for n in todo if n in found)
        try:
            self.ctx.wait_for(complete, "every resource to be complete (peer connected as "
                              "secondary)", timeout=self.p["complete_wait"])
            return True
        except WaitTimeout:
            return False

    def _peer_primary_seen(self, todo: list[str]) -> bool:
        """After the rollback: a live primary peer that is connected sends to us again, and
        our `hastd: NAME (secondary)` worker comes back (a CARP race lost, not a cut link);
        fencing it would power off a healthy primary. A cut link shows nothing."""
        titles = [f"hastd: {n} (secondary)" for n in todo]
        try:
            self.ctx.wait_for(lambda: procs.titles_running(titles), "the peer's primary "
                              "to connect to us again", timeout=PEER_SEEN_WAIT)
            return True
        except WaitTimeout:
            return False

    def _not_complete(self, todo: list[str]) -> str:
        self.ctx.forget()
        found = self.observe()
        states = " ".join(f"{n}={found[n].status or 'no worker'}" for n in todo if n in found)
        return (f"not complete {self.p['complete_wait']:g}s after `hastctl role primary` "
                f"({states}): the peer is down, cut off or still primary")

    def _wait_for_peer_to_leave_primary(self, names: list[str]) -> bool:
        """True when the peer was fenced (known down), False when no worker runs."""
        titles = [f"hastd: {n} (secondary)" for n in names]

        def running() -> list[str]:
            return procs.titles_running(titles)

        try:
            self.ctx.wait_for(lambda: not running(), "the peer to leave primary ("
                              + ", ".join(titles) + " to exit)",
                              timeout=self.p["secondary_wait"])
            return False
        except WaitTimeout:
            still = running()
        if not still:
            return False
        why = (f"{', '.join(still)} still running after {self.p['secondary_wait']:g}s: "
               "the peer still acts as primary")
        if self.ctx.engine.fence(why):
            log.warning("%s; the fence command succeeded, taking over", why,
                        extra={"event": "forced", "resource": self.name})
            return True
        raise Refused(f"{why}; refusing `hastctl role primary` (it would exit 0 and leave two "
                      "primaries, a split brain); configure [node] fence to allow a takeover")

    def _why_no_device(self, devices: list[str]) -> str:
        missing = [d for d in devices if not os.path.exists(d)]
        self.ctx.forget()       # the roles now, not as they were before the wait
        try:
            roles = " ".join(f"{n}={h.role}" for n, h in self.observe().items())
        except CommandFailed as exc:
            roles = exc.one_line()
        return (" ".join(missing) + " to appear after `hastctl role primary` (now: " + roles +
                "; a primary worker that exits sends the resource back to init)")

    def release(self) -> None:
        found = self.observe()
        todo = [n for n, h in found.items() if h.role != "secondary"]
        if not todo:
            return
        rep.refuse_if_used(self.ctx, [self.device(n) for n in found],
                           f"make {' '.join(todo)} secondary")
        self.ctx.run(self.hastctl("role", "secondary", *(["all"] if self.all else todo)),
                     readonly=False, what=f"make {' '.join(todo)} secondary")

    def start_replicating(self) -> None:
        """A promotable clone's start: every resource in init (hastd's first role) made
        secondary, ready to receive from a primary peer (docs/reference/hast.md §3)."""
        todo = [n for n, h in self.observe().items() if h.role == "init"]
        if todo:
            self._set_role("secondary", todo)

    def stop_replicating(self) -> None:
        """A promotable clone's stop: released (refused while a device is in use), then
        back to init, as rc.d/hastd's stop does (`hastctl role init`)."""
        if any(h.role == "primary" for h in self.observe().values()):
            self.release()
        todo = [n for n, h in self.observe().items() if h.role != "init"]
        if todo:
            self._set_role("init", todo)

    def _set_role(self, role: str, todo: list[str]) -> None:
        self.ctx.run(self.hastctl("role", role, *(["all"] if self.all else todo)),
                     readonly=False, what=f"make {' '.join(todo)} {role}")


RESOURCE = Hast
