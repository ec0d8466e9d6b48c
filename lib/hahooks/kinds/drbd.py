"""`drbd`: promote a DRBD resource to Primary and demote it again (seeds 001/004), doing
what drbddisk does not (docs/reference/drbd.md §4: it promotes blindly for ~5 s):

acquire looks before it promotes, on every try until `promote_wait` runs out:
  - local role Primary already            -> done;
  - the peer is Primary                   -> wait (it may be demoting), then refuse:
                                             two Primaries on ext4/xfs corrupt it;
  - no access to UpToDate data (the local  -> wait (a resync or the handshake may finish),
    disk Consistent, Outdated, Inconsistent,  then refuse: promoting would serve data that
    Diskless, ... and no connected peer      may not be the newest (DRBD's own "Need access
    with an UpToDate disk)                   to UpToDate data", drbd.ocf exit 17);
  - not connected (WFConnection, StandAlone): the peer may be Primary unseen, so promote
    only after the [node] fence command succeeded (`unknown_peer = "promote"` leaves it to
    DRBD's own fencing policy instead, as drbddisk does);
  - otherwise `drbdadm primary RES`; a refusal by DRBD is retried the same way.
It never passes --force. release refuses while the device is mounted or in a pool, then
retries `drbdadm secondary RES` within `demote_wait` (DRBD refuses while the device is held
open; "don't lie to your cluster manager").

held     = role Primary (warning when not replicating: connection not Connected, or the
           peer's disk not UpToDate).
released = role Secondary, or the resource is down (Unconfigured).
"""
from __future__ import annotations

import dataclasses
import logging
import os

from hahooks import parsers, schema
from hahooks.errors import CommandFailed, Refused
from hahooks.kinds import _replication as rep
from hahooks.kinds.base import Observation, Resource, broken, held, released

log = logging.getLogger("hahooks.kinds.drbd")

REPLICATING = ("Connected", "Established", "SyncSource", "SyncTarget", "PausedSyncS",
               "PausedSyncT", "VerifyS", "VerifyT")


_DOWN = "Device minor not allocated"


class NotYet(Refused):
    """Promotion or demotion is not possible yet; retried until the budget runs out."""


@dataclasses.dataclass
class DrbdState:
    role: str
    peer_role: str | None
    disk: str
    peer_disk: str | None
    cstate: str

    def __str__(self) -> str:
        peer = f", peer {self.peer_role}" if self.peer_role else ""
        pdisk = f"/{self.peer_disk}" if self.peer_disk else ""
        return f"{self.role}{peer}, {self.cstate}, disk {self.disk}{pdisk}"


class Drbd(Resource):
    KIND = "drbd"
    EXCLUSIVE = True     # Primary while the peer is not: this node alone writes the device
    PARAMS = {
        "resource": schema.Name(doc="DRBD resource name (drbd.conf `resource NAME`)"),
        "minor": schema.Int(None, "device minor: <dev_dir>/drbd<minor> is checked for "
                            "mounts before demotion", minimum=0, maximum=1048575),
        "promote_wait": schema.Duration("15s", "how long to keep trying to promote"),
        "demote_wait": schema.Duration("10s", "how long to keep trying to demote"),
        "unknown_peer": schema.Str("fence", "promoting while not connected (the peer may "
                                   "be Primary unseen): \"fence\" = only after [node] fence "
                                   "succeeded; \"promote\" = leave it to DRBD's own fencing "
                                   "policy, as drbddisk does", choices=("fence", "promote")),
    }

    @property
    def device(self) -> str | None:
        m = self.p["minor"]
        return None if m is None else rep.dev_path(self.ctx, f"drbd{m}")

    def _query(self, what: str) -> str:
        r = self.ctx.query(["drbdadm", what, self.p["resource"]], check=False)
        if r.exit_code != 0:
            # a resource that is down: drbdsetup-84 "Device minor not allocated" (exit 10),
            # DRBD 9 "No such resource"; DRBD 8.3's drbdadm printed "Unconfigured"
            text = r.stdout + r.stderr
            if (r.exit_code == 10 and _DOWN in text) or "No such resource" in text:
                return "Unconfigured"
            raise CommandFailed(r, f"drbd {what}")
        return r.stdout

    def observe(self) -> DrbdState:
        role, peer_role = parsers.split_pair(self._query("role"))
        if role == "Unconfigured":
            return DrbdState("Unconfigured", None, "Unconfigured", None, "Unconfigured")
        disk, peer_disk = parsers.split_pair(self._query("dstate"))
        cstate = parsers.split_pair(self._query("cstate"))[0]
        return DrbdState(role, peer_role, disk, peer_disk, cstate)

    def status(self) -> Observation:
        try:
            s = self.observe()
        except CommandFailed as exc:
            return broken(exc.one_line())
        details = dataclasses.asdict(s)
        if s.role == "Primary":
            if self.device and not os.path.exists(self.device):
                return broken(f"Primary but {self.device} is missing", **details)
            if s.peer_role == "Primary":
                return broken(f"{s}: both nodes Primary (split brain)", **details)
            warning = ""
            if s.cstate not in REPLICATING:
                warning = f"not replicating: connection {s.cstate}"
            elif s.peer_disk and s.peer_disk != "UpToDate":
                warning = f"peer disk {s.peer_disk} ({s.cstate})"
            return held(str(s), warning, **details)
        if s.role == "Secondary":
            return released(str(s), **details)
        if s.role == "Unconfigured":
            return released("Unconfigured (down: not replicating until `drbdadm up`)",
                            **details)
        return broken(f"cannot tell the role: {s}", **details)

    def acquire(self) -> None:
        res = self.p["resource"]

        def attempt() -> None:
            s = self.observe()
            if s.role == "Primary":
                return
            if s.role == "Unconfigured":
                raise NotYet(f"{res} is Unconfigured (not up)")
            if s.peer_role == "Primary":
                raise NotYet(f"the peer is Primary ({s})")
            if s.disk != "UpToDate":
                if s.peer_disk != "UpToDate" or s.cstate not in REPLICATING:
                    raise NotYet(f"no access to UpToDate data: local disk {s.disk}, peer disk "
                                 f"{s.peer_disk or 'unknown'} ({s})")
                log.warning("promoting %s with its local disk %s: reads go to the UpToDate "
                            "peer until the resync ends", res, s.disk,
                            extra={"resource": self.name})
            if s.cstate not in REPLICATING:
                self._peer_unseen(s)
            r = self.ctx.run(["drbdadm", "primary", res], readonly=False, check=False,
                             what=f"promote {res}")
            if r.exit_code != 0:
                raise NotYet(f"drbdadm primary {res} exited {r.exit_code}: {rep.tail(r)}")
            if not self.ctx.dry_run and self.observe().role != "Primary":
                raise NotYet(f"still not Primary after drbdadm primary ({self.observe()})")

        self._within(attempt, self.p["promote_wait"], f"promote {res}")

    def _peer_unseen(self, s: DrbdState) -> None:
        """Not connected: the peer may be Primary where we cannot see it (a cut link, not a
        dead node). Promoting then is a forced step: only after fencing, or by choice."""
        if self.p["unknown_peer"] == "promote":
            return
        why = f"{self.p['resource']} is {s.cstate}: the peer may still be Primary unseen"
        if self.ctx.fence_peer(why):
            return
        raise Refused(f"refusing to promote: {why}, and no [node] fence command succeeded "
                      "(set unknown_peer = \"promote\" to leave it to DRBD's fencing policy)")

    def release(self) -> None:
        res = self.p["resource"]
        if self.observe().role != "Primary":
            return
        if self.device:
            rep.refuse_if_used(self.ctx, [self.device], f"demote {res}")

        def attempt() -> None:
            r = self.ctx.run(["drbdadm", "secondary", res], readonly=False, check=False,
                             what=f"demote {res}")
            if r.exit_code != 0:
                raise NotYet(f"drbdadm secondary {res} exited {r.exit_code}: {rep.tail(r)}")

        self._within(attempt, self.p["demote_wait"], f"demote {res}")

    def _within(self, attempt, wait: float, what: str) -> None:
        budget = min(wait, self.ctx.deadline.remaining())
        try:
            self.ctx.retry(attempt, budget, what, retry_on=(NotYet,), first=0.05, ceiling=0.5)
        except NotYet as exc:
            raise Refused(f"refusing to {what}: {exc} (still so after {budget:g}s)") from None


RESOURCE = Drbd
