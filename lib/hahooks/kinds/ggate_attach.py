"""`ggate-attach`: the peer's exported image as /dev/ggateN (`ggatec create -u N host path`),
seed 000's master attaching the slave's image to mirror it.

held     = ggateN is listed by `ggatec list -v` with info "host:port path" matching, and
           <dev_dir>/ggateN exists.
released = ggateN is not listed.
broken   = ggateN is attached to another host or path, or listed without its device.

acquire retries `ggatec create -t IO_TIMEOUT` (the peer's ggated may be starting: seed 000
loops on it forever) until the device exists or `connect_wait` runs out; release refuses while ggateN is
mounted or in a pool, then `ggatec destroy -u N` (without -f: a GEOM consumer such as gmirror
still holding it makes ggatec refuse, which is what we want).
"""
from __future__ import annotations

import os

from hahooks import parsers, schema, waits
from hahooks.errors import CommandFailed, Refused
from hahooks.kinds import _replication as rep
from hahooks.kinds.base import Observation, Resource, broken, held, released

DEFAULT_PORT = 3080
# ggatec's own default -t 0 arms no guard: with the peer gone, every write on the mirror above
# hangs for ever (docs/reference/ggate.md §4; sys/geom/gate/g_gate.c g_gate_create(),
# g_gate_guard()). With -t N the guard runs every N s and fails the requests queued 5 s or
# more, so gmirror drops the component and the writes go on DEGRADED after 5..5+N s. 10 s
# bounds the hang at 15 s (under the failover timers of docs/config.md) while an outage of
# 5 s or less (ggatec reconnects every 2 s) never costs the component a full resync.
DEFAULT_IO_TIMEOUT = 10


class GgateAttach(Resource):
    KIND = "ggate-attach"
    EXCLUSIVE = True     # the peer serves the image only to us while we hold it
    PARAMS = {
        "host": schema.Str(doc="address of the peer running ggated"),
        "path": schema.Path(doc="the exported path on the peer (as in its gg.exports)"),
        "unit": schema.Int(doc="fixed unit: the device is <dev_dir>/ggate<unit>",
                           minimum=0, maximum=4095),
        "port": schema.Int(DEFAULT_PORT, "ggated port", minimum=1, maximum=65535),
        "io_timeout": schema.Int(DEFAULT_IO_TIMEOUT, "ggatec -t: the guard period; requests "
                                 "queued 5 s fail at its next run (0 = never: writes hang "
                                 "while the peer is gone)", minimum=0),
        "connect_wait": schema.Duration("30s", "how long to keep retrying `ggatec create`"),
    }

    @property
    def ggate(self) -> str:
        return f"ggate{self.p['unit']}"

    @property
    def device(self) -> str:
        return rep.dev_path(self.ctx, self.ggate)

    @property
    def info(self) -> str:
        return f"{self.p['host']}:{self.p['port']} {self.p['path']}"

    def listed(self) -> dict | None:
        r = self.ctx.query(["ggatec", "list", "-v"])
        return parsers.parse_ggatec_list(r.stdout).get(self.ggate)

    def status(self) -> Observation:
        entry = self.listed()
        if entry is None:
            return released(f"{self.ggate} not attached")
        info = entry.get("info")
        if info and info != self.info:
            return broken(f"{self.ggate} is attached to {info}, not {self.info}")
        if not os.path.exists(self.device):
            return broken(f"{self.ggate} listed but {self.device} missing")
        return held(f"{self.ggate} attached to {self.info}")

    def acquire(self) -> None:
        entry = self.listed()
        if entry is not None and entry.get("info", self.info) != self.info:
            raise Refused(f"{self.ggate} is attached to {entry['info']}; refusing to attach "
                          f"{self.info} on the same unit")
        argv = ["ggatec", "create", "-p", str(self.p["port"]), "-u", str(self.p["unit"]),
                "-t", str(self.p["io_timeout"]), self.p["host"], self.p["path"]]

        def attempt() -> None:
            if entry is None and not os.path.exists(self.device):
                r = self.ctx.run(argv, readonly=False, check=False, what=f"attach {self.info}")
                if r.exit_code != 0 and self.listed() is None:
                    raise CommandFailed(r, f"attach {self.info}")
            self.ctx.wait_for(lambda: os.path.exists(self.device), f"{self.device} to appear",
                              timeout=1.0, ceiling=waits.STAT_POLL)

        self.ctx.retry(attempt, self.p["connect_wait"], f"{self.device} from {self.info}")

    def release(self) -> None:
        entry = self.listed()
        if entry is None:
            return
        if entry.get("info", self.info) != self.info:
            raise Refused(f"{self.ggate} is attached to {entry['info']}, not {self.info}: "
                          "not ours to destroy")
        rep.refuse_if_used(self.ctx, [self.device], f"destroy {self.ggate}")
        self.ctx.run(["ggatec", "destroy", "-u", str(self.p["unit"])], readonly=False,
                     what=f"destroy {self.ggate}")


RESOURCE = GgateAttach
