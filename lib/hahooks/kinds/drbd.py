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
  - not connected (8.4 WFConnection/StandAlone, 9 Connecting/StandAlone/...): the peer may
    be Primary unseen, so promote only after the [node] fence command succeeded
    (`unknown_peer = "promote"` leaves it to DRBD's own fencing policy instead, as drbddisk
    does);
  - otherwise `drbdadm primary RES`; a refusal by DRBD is retried the same way.
It never passes --force. release refuses while the device is mounted or in a pool, then
retries `drbdadm secondary RES` within `demote_wait` (DRBD refuses while the device is held
open; "don't lie to your cluster manager").

Which DRBD: on a DRBD 8.4 kernel `drbdadm role` prints "Local/Peer" and the kind reads
role, dstate and cstate; on DRBD 9 it prints the local role only (docs/reference/drbd.md;
LINBIT/drbd-utils user/v9/drbdsetup.c role_cmd()), so the first answer without a "/" tells
the step it runs on 9, and from then on the step reads `drbdadm status RES` alone (role,
disk, each peer's role, connection and disk: status_cmd()). Text, not `--json`: drbdadm
does not pass --json on to `drbdsetup status` (user/v9/drbdadm_main.c __adm_drbdsetup()
adds only --verbose), and drbdsetup alone would not know the resource's config. The rules
above are the same on both: a peer Primary waits, a peer that is not Connected is not
proof it is not Primary.

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


# a resource that is down: drbdsetup-84 "Device minor not allocated" (exit 10); DRBD 9
# role_cmd() "Unknown resource", status_cmd() "No such resource" (user/v9/drbdsetup.c);
# DRBD 8.3's drbdadm printed "Unconfigured"
_DOWN = ("Device minor not allocated", "Unknown resource", "No such resource")


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


_UNCONFIGURED = DrbdState("Unconfigured", None, "Unconfigured", None, "Unconfigured")


class Drbd(Resource):
    KIND = "drbd"
    EXCLUSIVE = True     # Primary while the peer is not: this node alone writes the device
    PROMOTABLE = True
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

    _drbd9 = False       # this step saw DRBD 9's one-word `drbdadm role` (one per step)

    @property
    def device(self) -> str | None:
        m = self.p["minor"]
        return None if m is None else rep.dev_path(self.ctx, f"drbd{m}")

    def _query(self, what: str) -> str:
        r = self.ctx.query(["drbdadm", what, self.p["resource"]], check=False)
        if r.exit_code != 0:
            if r.exit_code == 10 and any(m in r.stdout + r.stderr for m in _DOWN):
                return "Unconfigured"
            raise CommandFailed(r, f"drbd {what}")
        return r.stdout

    def observe(self) -> DrbdState:
        if self._drbd9:
            return self._observe_9()
        role, peer_role = parsers.split_pair(self._query("role"))
        if role == "Unconfigured":    # down (see _DOWN), or DRBD 8.3's own word for it
            return _UNCONFIGURED
        if peer_role is None:         # DRBD 9: the local role only; the peer is in status
            self._drbd9 = True
            return self._observe_9()
        disk, peer_disk = parsers.split_pair(self._query("dstate"))
        cstate = parsers.split_pair(self._query("cstate"))[0]
        return DrbdState(role, peer_role, disk, peer_disk, cstate)

    def _observe_9(self) -> DrbdState:
        """From `drbdadm status RES`. The peer that decides: one seen Primary, else one not
        Connected (it may be Primary unseen), else the first. No connection at all is
        StandAlone: nothing is known about a peer."""
        text = self._query("status")
        if text == "Unconfigured":
            return _UNCONFIGURED
        st = parsers.parse_drbd_status(text)
        if not st["role"] or not st["disk"]:
            # a format this kind does not know: no guess about who is Primary
            raise Refused(f"cannot read `drbdadm status {self.p['resource']}`: "
                          f"{text.strip()[:200]!r}")
        peers = st["peers"]
        peer = (next((p for p in peers if p["role"] == "Primary"), None)
                or next((p for p in peers if p["connection"] != "Connected"), None)
                or (peers[0] if peers else None))
        if peer is None:
            return DrbdState(st["role"], None, st["disk"], None, "StandAlone")
        connected = peer["connection"] == "Connected"
        return DrbdState(st["role"], peer["role"], st["disk"],
                         peer["peer_disk"] if connected else "DUnknown",
                         peer["replication"] if connected else peer["connection"])

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
        if self.ctx.engine.fence(why):
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

    def start_replicating(self) -> None:
        """A promotable clone's start: the resource up, as Secondary (drbd.ocf drbd_start():
        `drbdadm up` only when Unconfigured; a resource already up keeps its role)."""
        res = self.p["resource"]
        if self.observe().role == "Unconfigured":
            self.ctx.run(["drbdadm", "up", res], readonly=False, what=f"bring {res} up")

    def stop_replicating(self) -> None:
        """A promotable clone's stop: demoted (release(): refused while the device is in
        use), then `drbdadm down` (drbd.ocf drbd_stop())."""
        res = self.p["resource"]
        self.release()
        if self.observe().role != "Unconfigured":
            self.ctx.run(["drbdadm", "down", res], readonly=False, what=f"take {res} down")

    def _within(self, attempt, wait: float, what: str) -> None:
        budget = min(wait, self.ctx.deadline.remaining())
        try:
            self.ctx.retry(attempt, budget, what, retry_on=(NotYet,), first=0.05, ceiling=0.5)
        except NotYet as exc:
            raise Refused(f"refusing to {what}: {exc} (still so after {budget:g}s)") from None


RESOURCE = Drbd
