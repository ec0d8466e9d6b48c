"""`gmirror`: a GEOM mirror over providers of the layers below (seed 000: the peer's image as
ggate0 and the local image as md0), mounted from <dev_dir>/mirror/NAME.

held     = the mirror runs with an ACTIVE component and its device exists. DEGRADED (a
           component missing, or SYNCHRONIZING with its %) is held with a warning, so
           `hahooks status` says WARNING and mounting never waits for a rebuild.
released = no such mirror.
broken   = no ACTIVE component (STARTING) or no device; or, while nothing uses the mirror,
           a configured component exists but is not in it (GEOM may have assembled the
           mirror from leftover metadata on a stale copy: `hahooks master` repairs it).
           While the mirror is in use the same state is a warning (the peer went away
           and its ggate unit stays while ggatec reconnects).

Which copy is the sync source (docs/reference/gmirror.md §5: inserted components are synchronized
from the running mirror):
  - no mirror running: label it afresh from `prefer` (default: the first component), then
    insert the others, which GEOM rebuilds from it. That is seed 000's policy: after a
    failover the peer wrote its image directly, so the remote copy (ggate0) is the newest.
    Acquire refuses when `prefer` does not exist rather than label from a stale copy.
  - a mirror running and in use (mounted, in a pool): it is what has been served, so it is
    the source; missing components are inserted and rebuilt from it (seed 000's manual
    `gmirror rebuild remotemirror ggate0` after the slave came back).
  - a mirror running but not in use and without `prefer` ACTIVE (GEOM tasted leftover
    metadata when the providers appeared): stopped and labelled afresh from `prefer`.
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

from hahooks import parsers, schema
from hahooks.errors import Refused
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
        "wait_sync": schema.Bool(False, "block acquire until the mirror is COMPLETE"),
        "release_mode": schema.Str("destroy", "how release takes the mirror down",
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
        r = self.ctx.query(["gmirror", "status"])
        return parsers.parse_gmirror_status(r.stdout).get(self.p["mirror"])

    def status(self) -> Observation:
        m = self.observe()
        name = f"mirror/{self.p['mirror']}"
        if m is None:
            return released(f"{name} not running")
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
        if os.path.exists(self.stale_record):
            if m is None or m.status != "COMPLETE" or \
                    any(m.component(p) is None for p in self.p["components"]):
                self._refuse_stale(m)
            # a person rebuilt the mirror from the copy they chose: the record is settled
            self.ctx.effect(f"remove {self.stale_record}", lambda: os.unlink(self.stale_record))
        if m is not None and _active(m) and os.path.exists(self.device):
            source = m.component(self.prefer)
            if (not self.ctx.dry_run and self.in_use()) or \
                    (source and source.state == "ACTIVE") or \
                    not os.path.exists(self.provider(self.prefer)):
                outside = self.outside(m)
                if outside:        # drop what GEOM still remembers of the lost components
                    self._gmirror("forget", self.p["mirror"])
                self._insert(outside)
                return self._settle()
            log.warning("mirror %s runs without its sync source %s ACTIVE (assembled from "
                        "leftover metadata?): labelling it afresh from %s", self.p["mirror"],
                        self.prefer, self.prefer, extra={"resource": self.name})
        if m is not None:
            rep.refuse_if_used(self.ctx, [self.device], f"restart mirror {self.p['mirror']}")
            self._gmirror("stop", self.p["mirror"])
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
                          timeout=self.p["device_wait"])
        if self.p["wait_sync"]:
            self.ctx.wait_for(lambda: (self.observe() or parsers.Mirror("", "")).status ==
                              "COMPLETE", f"mirror {self.p['mirror']} to be COMPLETE")

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
