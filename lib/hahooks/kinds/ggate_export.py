"""`ggate-export`: the image a ggated on this node serves to the peer (seed 000's slave).

The roles are inverted, because what the stack *holds* is the right to use the image here:

held     = no ggated serves `exports_file`: the image is this node's alone (the layers above
           may attach and mount it).
released = ggated runs with `exports_file`: the peer writes the image through ggatec, so
           nothing here may touch it.

acquire = stop that ggated (TERM, then KILL after `stop_grace`); release = start it, after
checking that the exports file lists `image` and that the image is not in use here (not
attached to an md unit, not mounted, not in a pool): ggated exporting an image that is
mounted locally corrupts it. The peer's ggatec/gmirror notice the export going away
(docs/reference/ggate.md §4); which node should own the image is the floating address's decision.
"""
from __future__ import annotations

import os

from hahooks import parsers, procs, schema
from hahooks.errors import Refused
from hahooks.kinds import _replication as rep
from hahooks.kinds.base import Observation, Resource, held, released

DEFAULT_EXPORTS = "/etc/gg.exports"


class GgateExport(Resource):
    KIND = "ggate-export"
    PARAMS = {
        "image": schema.Path(doc="the file or device the peer attaches with ggatec"),
        "exports_file": schema.Path(DEFAULT_EXPORTS, 'ggated exports ("addr RW path" '
                                    'lines); must list image'),
        "address": schema.Str(None, "ggated -a: address to listen on"),
        "port": schema.Int(None, "ggated -p (default 3080)", minimum=1, maximum=65535),
        "start_wait": schema.Duration("5s", "how long ggated may take to be running"),
        "stop_grace": schema.Duration("5s", "TERM -> KILL grace when stopping ggated"),
    }

    def daemons(self) -> list:
        """ggated processes serving our exports file (named last on its command line, or
        the default file when none is named)."""
        mine = []
        for proc in rep.find_daemons("ggated"):
            try:
                argv = proc.cmdline()
            except Exception:
                continue
            last = argv[-1] if len(argv) > 1 else ""
            exports = last if last.startswith("/") and os.path.basename(last) != "ggated" \
                else DEFAULT_EXPORTS
            if exports == self.p["exports_file"]:
                mine.append(proc)
        return mine

    def status(self) -> Observation:
        running = self.daemons()
        if running:
            pids = " ".join(str(p.pid) for p in running)
            return released(f"ggated (pid {pids}) exports {self.p['image']} to the peer")
        return held(f"no ggated serves {self.p['exports_file']}: {self.p['image']} is local only")

    def acquire(self) -> None:
        running = self.daemons()
        if running:
            pids = " ".join(str(p.pid) for p in running)
            self.ctx.effect(f"stop ggated (pid {pids})",
                            lambda: procs.terminate_then_kill(running, self.p["stop_grace"]))
        self.ctx.wait_for(lambda: not self.daemons(), "ggated to exit")

    def release(self) -> None:
        if self.daemons():
            return
        self._check_exports()
        image = self.p["image"]
        users = [] if self.ctx.dry_run else rep.users_of(self.ctx, [image]) + self._md_users()
        if users:
            raise Refused(f"refusing to export {image} with ggated: " + "; ".join(users) +
                          " (release the layers above first)")
        argv = ["ggated"]
        if self.p["address"]:
            argv += ["-a", self.p["address"]]
        if self.p["port"]:
            argv += ["-p", str(self.p["port"])]
        self.ctx.run([*argv, self.p["exports_file"]], readonly=False, what="start ggated")
        self.ctx.wait_for(self.daemons, "ggated to be running", timeout=self.p["start_wait"])

    def _check_exports(self) -> None:
        path = self.p["exports_file"]
        try:
            with open(path) as f:
                lines = [ln.split("#", 1)[0].split() for ln in f]
        except OSError as exc:
            raise Refused(f"cannot read ggated exports {path}: {exc.strerror}") from None
        if not any(len(f) >= 3 and f[2] == self.p["image"] for f in lines):
            raise Refused(f"{path} does not export {self.p['image']} (expected a line like "
                          f"\"10.0.0.1 RW {self.p['image']}\")")

    def _md_users(self) -> list[str]:
        if not self.ctx.runner.which("mdconfig"):
            return []
        r = self.ctx.run(["mdconfig", "-lv"], readonly=True)
        return [f"{self.p['image']} is attached as {u.name}"
                for u in parsers.parse_mdconfig_verbose(r.stdout).values()
                if u.path == os.path.realpath(self.p["image"])]


RESOURCE = GgateExport
