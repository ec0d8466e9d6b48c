"""`gmirror`: a GEOM mirror over providers of the layers below (seed 000: the peer's image as
ggate0 and the local image as md0), mounted from <dev_dir>/mirror/NAME.

held     = the mirror runs with an ACTIVE component and its device exists. DEGRADED (a
           component missing, or SYNCHRONIZING with its %) is held with a warning, so
           `hahooks status` says WARNING and mounting never waits for a rebuild. On FreeBSD
           <= 8 components print without a state: ACTIVE unless "(NN%)" shows (parsers).
released = no such mirror (`gmirror status NAME`: "No such geom", exit 1).
broken   = STARTING (GEOM tasted fewer components than its metadata counts and waits up
           to kern.geom.mirror.timeout for the others; no device yet), no ACTIVE component
           or no device; or, while nothing uses the mirror, a configured component exists
           but is not in it (GEOM may have assembled the mirror from leftover metadata on a
           stale copy). While the mirror is in use the same state is a warning (the peer
           went away and its ggate unit stays while ggatec reconnects).

Which copy is the sync source (docs/reference/gmirror.md: inserted components are
synchronized from the running mirror). acquire labels only when no mirror exists, and
never stops or relabels a running one (one with a provider: COMPLETE or DEGRADED):
  - no mirror: label it afresh from `prefer` (default: the first component), then insert
    the others, which GEOM rebuilds from it. That is seed 000's policy: after a failover
    the peer wrote its image directly, so the remote copy (ggate0) is the newest. Acquire
    refuses when `prefer` does not exist rather than label from a stale copy.
  - STARTING (no provider yet, nothing served from it): without `prefer` among its disks
    while `prefer` exists (leftover metadata, e.g. a failback after a crash) it is stopped
    and labelled from `prefer` as above; else wait (device_wait) for GEOM to launch it.
  - running and in use (mounted, in a pool), or running with `prefer` in it, or `prefer`
    absent: it is kept; missing components are inserted and rebuilt from it (seed 000's
    manual `gmirror rebuild remotemirror ggate0` after the slave came back).
  - running without `prefer`, nothing using it, `prefer` present outside it (GEOM tasted
    leftover metadata when the providers appeared): which copy is newer is unknown, so
    acquire refuses; a person stops it and labels from the copy they choose.
With `autosync = false` labels are `-n` and each inserted component gets `gmirror rebuild`.

release refuses while the mirror device is mounted or in a pool, then `gmirror destroy`:
stop, and clear every component's metadata, so GEOM cannot re-assemble a stale mirror when
the providers come back (`release_mode = "stop"` keeps it). Released while `prefer` was not
ACTIVE (the peer died and this node went on writing alone), it leaves a record in the state
dir, and acquire then refuses to label from `prefer` until a person has chosen the copy.
"""
from __future__ import annotations

import logging
import os
import time

from hahooks import parsers, schema, waits
from hahooks.errors import CommandFailed, Refused
from hahooks.kinds import _replication as rep
from hahooks.kinds.base import Observation, Resource, broken, held, released
from hahooks.schema import Invalid

log = logging.getLogger("hahooks.kinds.gmirror")


class Gmirror(Resource):
    KIND = "gmirror"
    PARAMS = {
        "mirror": schema.Name(doc="mirror name: the device is <dev_dir>/mirror/<mirror>"),
        "components": schema.Names(doc="GEOM providers, e.g. [\"ggate0\", \"md0\"]"),
        "prefer": schema.Name(None, "the component the mirror is labelled from (the sync "
                              "source); default: the first component"),
        "balance": schema.Str("prefer", "read balance algorithm",
                              choices=("load", "prefer", "round-robin", "split")),
        "autosync": schema.Bool(True, "let GEOM synchronize inserted components (false: "
                                "label -n and run `gmirror rebuild` for each)"),
        "wait_sync": schema.Bool(False, "block acquire until the mirror is COMPLETE "
                                 "(false: mount while it rebuilds)"),
        "release_mode": schema.Str("destroy", "how release takes the mirror down: destroy "
                                   "clears the metadata, stop keeps it",
                                   choices=("destroy", "stop")),
        "device_wait": schema.Duration("5s", "how long <dev_dir>/mirror/NAME may take to appear"),
    }

    @classmethod
    def validate(cls, spec) -> None:
        prefer = spec.params["prefer"]
        if prefer and prefer not in spec.params["components"]:
            raise Invalid(f"prefer: {prefer!r} is not one of components "
                          f"{spec.params['components']}")

    @property
    def prefer(self) -> str:
        return self.p["prefer"] or self.p["components"][0]

    @property
    def device(self) -> str:
        return rep.dev_path(self.ctx, "mirror", self.p["mirror"])

    def provider(self, name: str) -> str:
        return rep.dev_path(self.ctx, name)

    def observe(self) -> parsers.Mirror | None:
        """`gmirror status NAME` (sbin/geom/core/geom.c std_status(), docs/reference/
        gmirror.md): exit 1 "No such geom" = no mirror; exit 0 without a line for it = a
        geom without a provider yet, i.e. STARTING (one line per provider is printed)."""
        r = self.ctx.query(["gmirror", "status", self.p["mirror"]], check=False)
        if r.exit_code == 1 and "No such geom" in r.stderr:
            return None
        if r.exit_code != 0:
            raise CommandFailed(r, f"gmirror status {self.p['mirror']}")
        found = parsers.parse_gmirror_status(r.stdout).get(self.p["mirror"])
        return found or parsers.Mirror(self.p["mirror"], "STARTING")

    def status(self) -> Observation:
        try:
            m = self.observe()
        except CommandFailed as exc:
            return broken(exc.one_line())
        name = f"mirror/{self.p['mirror']}"
        if m is None:
            return released(f"{name} not running")
        if m.status == "STARTING":
            return broken(f"{name} is STARTING: GEOM waits for the rest of its components "
                          f"(kern.geom.mirror.timeout) before it provides {self.device}",
                          status=m.status, components={})
        comps = ", ".join(_describe(c) for c in m.components)
        details = {"status": m.status, "components": {
            c.provider: {"state": c.state, "percent": c.percent} for c in m.components}}
        if not _active(m):
            return broken(f"{name} is {m.status} without an ACTIVE component ({comps})",
                          **details)
        if os.path.exists(self.stale_record) and (m.status != "COMPLETE" or any(
                m.component(p) is None for p in self.p["components"])):
            return broken(f"{name} {m.status}: {comps}; but it last ran without "
                          f"{self.prefer}, whose copy is stale ({self.stale_record})", **details)
        if not os.path.exists(self.device):
            return broken(f"{name} is {m.status} but {self.device} is missing", **details)
        outside = self.outside(m)
        if outside and not self.in_use():
            # nothing served from it yet: GEOM may have assembled it from leftover metadata
            # on a stale copy; `hahooks master` inserts or re-labels (see acquire)
            return broken(f"{name} {m.status}: {comps}; " + ", ".join(outside) +
                          " present but not in the mirror", **details)
        problems = [_describe(c) for c in m.components if c.state != "ACTIVE"]
        problems += [f"{p} not in the mirror" for p in outside]
        problems += [f"{p} missing" for p in self.p["components"]
                     if m.component(p) is None and p not in outside]
        warning = f"{m.status}: " + ", ".join(problems) if m.status != "COMPLETE" or problems \
            else ""
        return held(f"{name} {m.status}: {comps}", warning, **details)

    def outside(self, m: parsers.Mirror) -> list[str]:
        """Configured components whose provider exists but which the mirror does not have."""
        return [p for p in self.p["components"]
                if m.component(p) is None and os.path.exists(self.provider(p))]

    def in_use(self) -> bool:
        return bool(rep.users_of(self.ctx, [self.device]))

    @property
    def stale_record(self) -> str:
        """Written when the mirror is released while running without `prefer` ACTIVE: the
        local components then hold writes that `prefer` lacks, and labelling from it would
        silently throw them away (seed 000 after Server_B died: "manual intervention")."""
        return os.path.join(self.ctx.node.state_dir,
                            f"gmirror-{self.p['mirror']}.{self.prefer}-stale")

    def acquire(self) -> None:
        m = self.observe()
        if m is not None and m.status == "STARTING":
            m = self._starting()
        if os.path.exists(self.stale_record):
            if m is None or m.status != "COMPLETE" or \
                    any(m.component(p) is None for p in self.p["components"]):
                self._refuse_stale(m)
            # a person rebuilt the mirror from the copy they chose: the record is settled
            self.ctx.effect(f"remove {self.stale_record}", lambda: os.unlink(self.stale_record))
        if m is not None:
            self._keep_running(m)
            return self._settle()
        source = self.provider(self.prefer)
        if not self.ctx.dry_run and not os.path.exists(source):
            raise Refused(f"the sync source {source} does not exist; refusing to label "
                          f"mirror {self.p['mirror']} from a copy that may be stale")
        self._gmirror("label", "-b", self.p["balance"], *([] if self.p["autosync"] else ["-n"]),
                      self.p["mirror"], self.prefer)
        others = [c for c in self.p["components"] if c != self.prefer]
        missing = [c for c in others
                   if not self.ctx.dry_run and not os.path.exists(self.provider(c))]
        if missing:
            log.warning("%s missing: mirror %s runs without it", ", ".join(missing),
                        self.p["mirror"], extra={"resource": self.name})
        self._insert([c for c in others if c not in missing])
        self._settle()

    def _starting(self) -> parsers.Mirror | None:
        """A STARTING geom has no provider yet, so nothing was served from it. Without
        `prefer` among its disks (`gmirror status -g` lists them, NONE until the launch)
        while `prefer` exists, GEOM tasted leftover metadata (seed 000's failback after a
        crash: the peer's destroy cleared prefer's): stop it and label from `prefer` as
        when no mirror exists. Otherwise wait for the launch (g_mirror.c: every disk there,
        or kern.geom.mirror.timeout, 4 s); labelling now would fail on its busy disks."""
        r = self.ctx.query(["gmirror", "status", "-g", self.p["mirror"]], check=False)
        geom = parsers.parse_gmirror_status(r.stdout).get(self.p["mirror"]) \
            if r.exit_code == 0 else None          # FreeBSD <= 8 may lack -g: just wait
        if geom and geom.status == "STARTING" and geom.component(self.prefer) is None and \
                (self.ctx.dry_run or os.path.exists(self.provider(self.prefer))):
            log.warning("mirror %s is STARTING from leftover metadata without its sync "
                        "source %s (%s): stopping it before it launches", self.p["mirror"],
                        self.prefer, ", ".join(c.provider for c in geom.components),
                        extra={"resource": self.name})
            self._gmirror("stop", self.p["mirror"])
            return None
        self.ctx.wait_for(lambda: (self.observe() or _GONE).status != "STARTING",
                          f"mirror {self.p['mirror']} to leave STARTING",
                          timeout=self.p["device_wait"])
        return self.observe()

    def _keep_running(self, m: parsers.Mirror) -> None:
        """A running mirror is never stopped or relabelled: it may be what was served, and
        stopping it could discard writes only it holds. Missing components join it."""
        if not _active(m) or not os.path.exists(self.device):
            raise Refused(f"mirror {self.p['mirror']} runs {m.status} without an ACTIVE "
                          f"component or without {self.device}; not stopping it: check it "
                          f"by hand (`gmirror status {self.p['mirror']}`)")
        outside = self.outside(m)
        if self.prefer in outside and not self.in_use():
            raise Refused(f"mirror {self.p['mirror']} is running without its sync source "
                          f"{self.prefer}, which exists outside it (GEOM assembled it from "
                          f"leftover metadata?); not stopping or relabelling a running "
                          f"mirror, nor rebuilding {self.prefer} from it. Choose the newer "
                          f"copy by hand: `gmirror stop {self.p['mirror']}` and `gmirror "
                          f"label` from it, or `gmirror insert {self.p['mirror']} "
                          f"{self.prefer}` to keep the running copy")
        if outside:        # drop what GEOM still remembers of the lost components
            self._gmirror("forget", self.p["mirror"])
        self._insert(outside)

    def _refuse_stale(self, m: parsers.Mirror | None) -> None:
        with open(self.stale_record) as fh:
            since = fh.read().strip()
        now = f"; GEOM has now assembled it as {m.status}: " + ", ".join(
            _describe(c) for c in m.components) if m else ""
        raise Refused(f"mirror {self.p['mirror']} last ran without {self.prefer} ({since})"
                      f"{now}: the other components hold writes {self.prefer} lacks, and "
                      f"rebuilding from {self.prefer} would discard them. Decide by hand "
                      f"(e.g. `gmirror label {self.p['mirror']} <the newer copy>`, then "
                      f"`gmirror insert` the other and wait for COMPLETE), then run master "
                      f"again or remove {self.stale_record}")

    def _insert(self, components: list[str]) -> None:
        for comp in components:
            self._gmirror("insert", self.p["mirror"], comp)
            if not self.p["autosync"]:
                self._gmirror("rebuild", self.p["mirror"], comp)

    def _settle(self) -> None:
        self.ctx.wait_for(lambda: os.path.exists(self.device), f"{self.device} to appear",
                          timeout=self.p["device_wait"], ceiling=waits.STAT_POLL)
        if self.p["wait_sync"]:
            self.ctx.wait_for(lambda: (self.observe() or _GONE).status == "COMPLETE",
                              f"mirror {self.p['mirror']} to be COMPLETE",
                              detail=self._rebuild_progress)

    def _rebuild_progress(self) -> str:
        """For the progress line of a long wait_sync: each component's state and percent."""
        m = self.observe()
        return ", ".join(_describe(c) for c in m.components) if m else "no mirror"

    def release(self) -> None:
        m = self.observe()
        if m is None:
            return
        rep.refuse_if_used(self.ctx, [self.device], f"{self.p['release_mode']} mirror "
                           f"{self.p['mirror']}")
        source = m.component(self.prefer)
        if _active(m) and not (source and source.state == "ACTIVE"):
            note = (f"since {time.strftime('%Y-%m-%d %H:%M:%S')} or earlier; it ran on "
                    + ", ".join(_describe(c) for c in m.components))
            self.ctx.effect(f"record that {self.prefer} is stale in {self.stale_record}",
                            lambda: _write(self.stale_record, note))
        self._gmirror(self.p["release_mode"], self.p["mirror"])

    def _gmirror(self, verb: str, *args: str) -> None:
        self.ctx.run(["gmirror", verb, *args], readonly=False,
                     what=f"gmirror {verb} {self.p['mirror']}")


_GONE = parsers.Mirror("", "")     # observe() found no mirror


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def _active(m: parsers.Mirror) -> bool:
    return any(c.state == "ACTIVE" for c in m.components)


def _describe(c: parsers.MirrorComponent) -> str:
    if c.percent is not None:
        return f"{c.provider} {c.state or 'SYNCHRONIZING'} {c.percent}%"
    return f"{c.provider} {c.state or '?'}"


RESOURCE = Gmirror
