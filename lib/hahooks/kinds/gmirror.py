"""`gmirror`: a GEOM mirror over providers of the layers below (seed 000: the peer's image as
ggate0 and the local image as md0), mounted from <dev_dir>/mirror/NAME.

held     = the mirror runs with at least one ACTIVE component and its device exists; a
           DEGRADED mirror (a component missing or SYNCHRONIZING, with its %) is held with a
           warning, so `hahooks status` says WARNING and mounting never waits for a rebuild.
released = no such mirror.
broken   = the mirror exists without an ACTIVE component (STARTING) or without its device.

acquire labels the mirror afresh from the `prefer` component (default: the first one), then
inserts the others, which GEOM synchronizes *from* it. That is seed 000's policy: after a
failover the peer wrote its image directly, so the remote copy is the newest and the local
one must be rebuilt from it, never the other way round. A mirror found half-assembled
(STARTING) is stopped first. With `autosync = false` the mirror is labelled `-n` and each
inserted component gets an explicit `gmirror rebuild`, exactly as the seed does.

release refuses while the mirror device is mounted or in a pool, then `gmirror destroy`
(stop, and clear the metadata of every component: nothing stale can be re-assembled by
GEOM's tasting when the components come back; the next acquire labels afresh anyway).
`release_mode = "stop"` keeps the metadata for setups that rely on re-assembly.
"""
from __future__ import annotations

import logging
import os

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
        r = self.ctx.run(["gmirror", "status"], readonly=True)
        return parsers.parse_gmirror_status(r.stdout).get(self.p["mirror"])

    def status(self) -> Observation:
        m = self.observe()
        name = f"mirror/{self.p['mirror']}"
        if m is None:
            return released(f"{name} not running")
        comps = ", ".join(_describe(c) for c in m.components)
        details = {"status": m.status, "components": {
            c.provider: {"state": c.state, "percent": c.percent} for c in m.components}}
        if not any(c.state == "ACTIVE" for c in m.components):
            return broken(f"{name} is {m.status} without an ACTIVE component ({comps})",
                          **details)
        if not os.path.exists(self.device):
            return broken(f"{name} is {m.status} but {self.device} is missing", **details)
        problems = [_describe(c) for c in m.components if c.state != "ACTIVE"]
        problems += [f"{p} missing" for p in self.p["components"] if m.component(p) is None]
        warning = f"{m.status}: " + ", ".join(problems) if m.status != "COMPLETE" or problems \
            else ""
        return held(f"{name} {m.status}: {comps}", warning, **details)

    def acquire(self) -> None:
        m = self.observe()
        if m is not None:
            if any(c.state == "ACTIVE" for c in m.components) and os.path.exists(self.device):
                return                       # already running: held
            rep.refuse_if_used(self.ctx, [self.device], f"restart {self.p['mirror']}")
            self._gmirror("stop", self.p["mirror"])
        source = self.provider(self.prefer)
        if not self.ctx.dry_run and not os.path.exists(source):
            raise Refused(f"the sync source {source} does not exist; refusing to label "
                          f"mirror {self.p['mirror']} from a copy that may be stale")
        self._gmirror("label", "-b", self.p["balance"], *([] if self.p["autosync"] else ["-n"]),
                      self.p["mirror"], self.prefer)
        for comp in self.p["components"]:
            if comp == self.prefer:
                continue
            if not self.ctx.dry_run and not os.path.exists(self.provider(comp)):
                log.warning("%s missing: mirror %s runs without it", self.provider(comp),
                            self.p["mirror"], extra={"resource": self.name})
                continue
            self._gmirror("insert", self.p["mirror"], comp)
            if not self.p["autosync"]:
                self._gmirror("rebuild", self.p["mirror"], comp)
        self.ctx.wait_for(lambda: os.path.exists(self.device), f"{self.device} to appear",
                          timeout=self.p["device_wait"])
        if self.p["wait_sync"]:
            self.ctx.wait_for(lambda: (self.observe() or parsers.Mirror("", "")).status ==
                              "COMPLETE", f"mirror {self.p['mirror']} to be COMPLETE")

    def release(self) -> None:
        if self.observe() is None:
            return
        rep.refuse_if_used(self.ctx, [self.device], f"{self.p['release_mode']} mirror "
                           f"{self.p['mirror']}")
        self._gmirror(self.p["release_mode"], self.p["mirror"])

    def _gmirror(self, verb: str, *args: str) -> None:
        self.ctx.run(["gmirror", verb, *args], readonly=False,
                     what=f"gmirror {verb} {self.p['mirror']}")


def _describe(c: parsers.MirrorComponent) -> str:
    if c.percent is not None:
        return f"{c.provider} {c.state or 'SYNCHRONIZING'} {c.percent}%"
    return f"{c.provider} {c.state or '?'}"


RESOURCE = Gmirror
