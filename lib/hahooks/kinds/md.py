"""`md`: a vnode-backed memory disk (`mdconfig -a -t vnode -f IMAGE -u N`) on a fixed unit,
so the layers above can name /dev/mdN (seed 000: each node's image file).

held     = mdN is listed by `mdconfig -l` (docs/reference/md.md §1: "md0 md1 \\n", each name
           followed by a space) as a vnode on `file`, and <dev_dir>/mdN exists.
released = mdN is not attached.
broken   = mdN is attached to another file or type, or its device node is missing.

acquire attaches (refusing when the unit is taken by another image); release refuses while
mdN is mounted or in an imported pool, then `mdconfig -d -u N`.
"""
from __future__ import annotations

import os

from hahooks import parsers, schema, waits
from hahooks.errors import Refused
from hahooks.kinds import _replication as rep
from hahooks.kinds.base import Observation, Resource, broken, held, released


class Md(Resource):
    KIND = "md"
    PARAMS = {
        "file": schema.Path(doc="the image file (vnode) to attach"),
        "unit": schema.Int(doc="fixed unit number: the device is <dev_dir>/md<unit>",
                           minimum=0, maximum=4095),
        "device_wait": schema.Duration("5s", "how long <dev_dir>/mdN may take to appear"),
    }

    @property
    def md(self) -> str:
        return f"md{self.p['unit']}"

    @property
    def device(self) -> str:
        return rep.dev_path(self.ctx, self.md)

    @property
    def file(self) -> str:
        """mdconfig records the full real path of the image (-lv shows that one)."""
        return os.path.realpath(self.p["file"])

    def attached(self) -> parsers.MdUnit | None:
        r = self.ctx.query(["mdconfig", "-l"])
        if self.md not in parsers.parse_mdconfig_list(r.stdout):
            return None
        r = self.ctx.query(["mdconfig", "-lv"])
        return parsers.parse_mdconfig_verbose(r.stdout).get(self.md) or \
            parsers.MdUnit(self.md, "?", "?")

    def status(self) -> Observation:
        unit = self.attached()
        if unit is None:
            return released(f"{self.md} not attached")
        if unit.type != "vnode" or unit.path != self.file:
            return broken(f"{self.md} is a {unit.type} on {unit.path or '?'}, not a vnode on "
                          f"{self.p['file']}")
        if not os.path.exists(self.device):
            return broken(f"{self.md} attached but {self.device} missing")
        return held(f"{self.md} is a vnode on {self.p['file']} ({unit.size.strip()})")

    def acquire(self) -> None:
        unit = self.attached()
        if unit is not None and unit.path != self.file:
            raise Refused(f"unit {self.md} is already attached to {unit.path or '?'}; "
                          f"refusing to attach {self.p['file']} elsewhere")
        if unit is None:
            if not os.path.isfile(self.p["file"]):
                raise Refused(f"image {self.p['file']} does not exist")
            self.ctx.run(["mdconfig", "-a", "-t", "vnode", "-f", self.p["file"],
                          "-u", str(self.p["unit"])], readonly=False,
                         what=f"attach {self.p['file']}")
        self.ctx.wait_for(lambda: os.path.exists(self.device), f"{self.device} to appear",
                          timeout=self.p["device_wait"], ceiling=waits.STAT_POLL)

    def release(self) -> None:
        unit = self.attached()
        if unit is None:
            return
        if unit.path != self.file:
            raise Refused(f"{self.md} is attached to {unit.path or '?'}, not {self.file}: "
                          "not ours to detach")
        rep.refuse_if_used(self.ctx, [self.device], f"detach {self.md}")
        self.ctx.run(["mdconfig", "-d", "-u", str(self.p["unit"])], readonly=False,
                     what=f"detach {self.md}")


RESOURCE = Md
